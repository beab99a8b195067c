# Evaluation: recognition on the test split for every trained encoder.


rule recognition:
    input:
        manifest="results/{ds}/manifest.parquet",
        clips=eval_clips,
        model=model_checkpoint,
    output:
        "results/{ds}/eval/{model}/recognition.json",
    params:
        settings=settings("evaluate"),
        code=CODE["evaluate"],
    threads: 2
    resources:
        batch_size=compute_setting("batch_size"),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/eval/{model}/recognition.log",
    shell:
        "uniego evaluate --settings {params.settings:q} --manifest {input.manifest:q} --clips {input.clips:q} "
        "--model {input.model:q} --name {wildcards.model} --out {output:q} --workers {threads} "
        "--batch-size {resources.batch_size} --device {resources.device} --precision {resources.precision} > {log:q} 2>&1"


rule report:
    input:
        recognition=lambda wc: [f for _, name in seed_runs(config, wc.ds) for f in recognition_targets(name)],
    output:
        "results/{ds}/report.md",
    params:
        code=CODE["report"],
        runs=report_runs,
    log:
        "logs/{ds}/report.log",
    shell:
        "uniego report --dataset {wildcards.ds} --recognition {params.runs} --out {output:q} > {log:q} 2>&1"
