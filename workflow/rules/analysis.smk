# Analyses (results/{ds}/analysis/): representation similarity of teachers and proxies
# (Figure 3), which proxies SPD selected (Figure 6, Tables 11-12), gradient conflict (Figures
# 4-5), and a linear probe of every Level-I teacher's frozen features (what each knows about the task).


rule cka:
    input:
        unpack(proxy_output_inputs),
        unpack(feature_inputs),
        manifest="results/{ds}/manifest.parquet",
    output:
        json="results/{ds}/analysis/cka.json",
        png=report("results/{ds}/analysis/cka.png", caption="../report/cka.rst", category="Analysis", labels={"dataset": "{ds}", "figure": "CKA"}),
    log:
        "logs/{ds}/analysis/cka.log",
    conda:
        "../../envs/uniego.yaml"
    params:
        settings=settings("cka"),
        code=CODE["analysis"],
        features=pairs("features"),
        outputs=pairs("outputs"),
    shell:
        "uniego cka --settings {params.settings:q} --manifest {input.manifest:q} --features {params.features} "
        "--proxy-outputs {params.outputs} --out {output.json:q} --png {output.png:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"


rule selection:
    input:
        "results/{ds}/uniego.pt",
    output:
        json="results/{ds}/analysis/selection.json",
        png=report(
            "results/{ds}/analysis/selection.png",
            caption="../report/selection.rst",
            category="Analysis",
            labels={"dataset": "{ds}", "figure": "SPD selection"},
        ),
    log:
        "logs/{ds}/analysis/selection.log",
    conda:
        "../../envs/uniego.yaml"
    params:
        code=CODE["analysis"],
    shell:
        "uniego selection --model {input:q} --out {output.json:q} --png {output.png:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"


rule conflict:
    input:
        unpack(conflict_inputs),
    output:
        json="results/{ds}/analysis/conflict.json",
        png=report(
            "results/{ds}/analysis/conflict.png",
            caption="../report/conflict.rst",
            category="Analysis",
            labels={"dataset": "{ds}", "figure": "gradient conflict"},
        ),
    log:
        "logs/{ds}/analysis/conflict.log",
    conda:
        "../../envs/uniego.yaml"
    params:
        code=CODE["analysis"],
        models=lambda wc, input: " ".join(f"{m}={input[m]}" for m in input.keys()),
    shell:
        "uniego conflict --models {params.models} --out {output.json:q} --png {output.png:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"


rule probe:
    input:
        unpack(feature_inputs),
        manifest="results/{ds}/manifest.parquet",
    output:
        "results/{ds}/analysis/probes.json",
    log:
        "logs/{ds}/analysis/probes.log",
    conda:
        "../../envs/uniego.yaml"
    params:
        code=CODE["analysis"],
        features=pairs("features"),
    shell:
        "uniego probe --manifest {input.manifest:q} --features {params.features} --out {output:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"
