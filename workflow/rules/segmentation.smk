# Temporal action segmentation on the long ego videos (paper Table 4): session table, sliding
# windows decoded once, each encoder's dense features, MS-TCN trained and scored per encoder.


rule sessions:
    input:
        session_inputs,
    output:
        table="results/{ds}/sessions.parquet",
        labels=directory("results/{ds}/session_labels"),
    log:
        "logs/{ds}/sessions.log",
    conda:
        "../../envs/uniego.yaml"
    params:
        settings=settings("manifest"),
        code=CODE["sessions"],
    shell:
        "uniego sessions --settings {params.settings:q} --labels {output.labels:q} --out {output.table:q} "
        "--code-version {params.code:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"


rule session_clips:
    input:
        "results/{ds}/sessions.parquet",
    output:
        directory("results/{ds}/clips/sessions.zarr"),
    log:
        "logs/{ds}/clips/sessions.log",
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    params:
        settings=settings("session_clips"),
        code=CODE["sessions"],
    shell:
        "uniego session-clips --settings {params.settings:q} --sessions {input:q} --out {output:q} "
        "--workers {threads} --code-version {params.code:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"


rule dense_features:
    input:
        sessions="results/{ds}/sessions.parquet",
        windows="results/{ds}/clips/sessions.zarr",
        model=model_checkpoint,
    output:
        directory("results/{ds}/eval/{model}/dense_features.zarr"),
    log:
        "logs/{ds}/eval/{model}/dense_features.log",
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(),
    params:
        settings=settings("evaluate"),
        code=CODE["segmentation"],
    shell:
        gpu_shell(
            "uniego dense-features --settings {params.settings:q} --sessions {input.sessions:q} "
            "--windows {input.windows:q} --model {input.model:q} --out {output:q}"
        )


rule segmentation:
    input:
        sessions="results/{ds}/sessions.parquet",
        features="results/{ds}/eval/{model}/dense_features.zarr",
    output:
        scores="results/{ds}/eval/{model}/segmentation.json",
        predictions="results/{ds}/eval/{model}/segmentation.predictions.npz",
    log:
        "logs/{ds}/eval/{model}/segmentation.log",
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(workers=False, batch_size=False, precision=False),
    params:
        settings=settings("segment"),
        code=CODE["segmentation"],
    shell:
        gpu_shell(
            "uniego segment --settings {params.settings:q} --sessions {input.sessions:q} --features {input.features:q} "
            "--name {wildcards.model} --out {output.scores:q} --workers 0",
            workers=False,
            batch_size=False,
            precision=False,
        )
