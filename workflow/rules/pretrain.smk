# Pretraining (the demo only, issue 18): a corpus the demo generator renders, disjoint from the
# demo dataset, then the stand-in teachers (each in its real model's checkpoint format, loaded by
# the real loader through `teachers.*.weights`) and the shared student start (`student.init`).
# Shared by every seed of a dataset: like ImageNet weights, they do not change with the run.


rule demo_corpus:
    output:
        directory("data/corpus_{name}"),
    log:
        "logs/pretrain/{name}/corpus.log",
    conda:
        "../../envs/uniego.yaml"
    threads: pretrain_threads
    params:
        settings=pretrain_setting("demo_corpus"),
        code=CODE["demo_corpus"],
    shell:
        "uniego demo-corpus --settings {params.settings:q} --out {output:q} --workers {threads} " "--code-version {params.code:q} 2>&1 | tee {log:q}"


rule pretrain:
    input:
        corpus="data/corpus_{name}",
    output:
        checkpoint="results/pretrain/{name}/{target}",
        record="results/pretrain/{name}/{target}.json",
    log:
        "logs/pretrain/{name}/{target}.log",
    benchmark:
        "benchmarks/rules/pretrain/{name}/{target}.tsv"
    conda:
        "../../envs/uniego.yaml"
    threads: pretrain_threads
    params:
        settings=pretrain_setting("pretrain"),
        code=CODE["pretrain"],
        target=lambda wc: wc.target.rpartition(".")[0],
    shell:
        "uniego pretrain --settings {params.settings:q} --corpus {input.corpus:q} --target {params.target} "
        "--out {output.checkpoint:q} --threads {threads} --code-version {params.code:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"
