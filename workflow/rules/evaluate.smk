# Evaluation: recognition on the test split for every trained encoder.


rule recognition:
    input:
        manifest="results/{ds}/manifest.parquet",
        clips=eval_clips,
        model=model_checkpoint,
    output:
        recognition="results/{ds}/eval/{model}/recognition.json",
        retrieval="results/{ds}/eval/{model}/retrieval.json",
    log:
        "logs/{ds}/eval/{model}/recognition.log",
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(),
    params:
        settings=settings("evaluate"),
        code=CODE["evaluate"],
    shell:
        gpu_shell(
            "uniego evaluate --settings {params.settings:q} --manifest {input.manifest:q} --clips {input.clips:q} "
            "--model {input.model:q} --name {wildcards.model} --out {output.recognition:q} "
            "--retrieval-out {output.retrieval:q}"
        )


# report.md: the configured seed's run (what `snakemake --cores all` builds). study.md: the same
# tables over that run and every repeat seed (datasets.<ds>.repeat_seeds), with mean and sd.
rule report:
    input:
        unpack(report_inputs),
    output:
        "results/{ds}/{doc}.md",
    log:
        "logs/{ds}/{doc}.log",
    conda:
        "../../envs/uniego.yaml"
    params:
        code=CODE["report"],
        recognition=report_runs("recognition"),
        retrieval=report_runs("retrieval"),
        segmentation=report_runs("segmentation"),
        ablations=lambda wc, input: " ".join(shlex.quote(f) for f in input.ablations),
        probes=report_probes,
        exo_cue=exo_cue_classes,
    shell:
        "uniego report --dataset {wildcards.ds} --recognition {params.recognition} --retrieval {params.retrieval} "
        "--segmentation {params.segmentation} --ablations {params.ablations} --cka {input.cka_json:q} "
        "--selection {input.selection_json:q} --conflict {input.conflict_json:q} --probes {params.probes} "
        "--exo-cue-classes {params.exo_cue} --out {output:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"
