# Data: the demo dataset, the manifest, the decoded-clip caches.

for _ds in dataset_names(config):
    _d = dataset_config(config, _ds)["datasets"][_ds]
    if _d["adapter"] == "demo":

        rule:
            name:
                f"demo_data_{_ds}"
            output:
                directory(_d["root"]),
            log:
                f"logs/{_ds}/demo_data.log",
            conda:
                "../../envs/uniego.yaml"
            threads: dataset_config(config, _ds)["compute"]["threads"]
            params:
                settings=canonical_json(stage_settings(config, _ds, "demo_data")),
                code=CODE["demo_data"],
            # progress on the terminal: it takes minutes
            shell:
                "uniego demo-data --settings {params.settings:q} --out {output:q} --workers {threads} "
                "--code-version {params.code:q} 2>&1 | tee {log:q}"

    if _d["adapter"] == "ee4d" and (_d.get("options") or {}).get("body_pose"):

        rule:
            name:
                f"body_pose_{_ds}"
            input:
                lambda wc, _ds=_ds: annotation_inputs(_ds),
                pose=str(Path(_d["root"]) / _d["options"]["body_pose"]),
            output:
                directory(body_pose_output(_ds)),
            log:
                f"logs/{_ds}/body_pose.log",
            conda:
                "../../envs/uniego.yaml"
            params:
                settings=canonical_json(stage_settings(config, _ds, "manifest")),
                code=CODE["check_data"],
            shell:
                "uniego body-pose --settings {params.settings:q} --out {output:q} --code-version {params.code:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"


rule check_data:
    input:
        dataset_inputs,
    output:
        "results/{ds}/data_check.json",
    log:
        "logs/{ds}/check_data.log",
    conda:
        "../../envs/uniego.yaml"
    params:
        settings=settings("check_data"),
        code=CODE["check_data"],
        inputs=data_signature,
    # the summary and any warning on the terminal, before anything trains
    shell:
        "uniego check-data --settings {params.settings:q} --out {output:q} --code-version {params.code:q} 2>&1 | tee {log:q}"


rule manifest:
    input:
        dataset_inputs,
        check="results/{ds}/data_check.json",
    output:
        "results/{ds}/manifest.parquet",
    log:
        "logs/{ds}/manifest.log",
    conda:
        "../../envs/uniego.yaml"
    params:
        settings=settings("manifest"),
        code=CODE["manifest"],
    shell:
        "uniego manifest --settings {params.settings:q} --out {output:q} --code-version {params.code:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"


rule clips:
    input:
        clip_view_inputs,
    output:
        directory("results/{ds}/clips/{view}.zarr"),
    log:
        "logs/{ds}/clips/{view}.log",
    benchmark:
        "benchmarks/rules/{ds}/clips/{view}.tsv"
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    params:
        settings=settings("clips", view="view"),
        code=CODE["clips"],
    shell:
        "uniego clips --settings {params.settings:q} --manifest {input:q} --view {wildcards.view} "
        "--out {output:q} --workers {threads} --code-version {params.code:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"


rule test_views:
    input:
        "results/{ds}/manifest.parquet",
    output:
        directory("results/{ds}/clips/ego.views{views}.zarr"),
    log:
        "logs/{ds}/clips/ego.views{views}.log",
    wildcard_constraints:
        views=r"\d+",
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    params:
        settings=lambda wc: canonical_json(stage_settings(config, wc.ds, "clips", view="ego")),
        code=CODE["clips"],
    shell:
        "uniego clips --settings {params.settings:q} --manifest {input:q} --view ego --temporal-views {wildcards.views} "
        "--out {output:q} --workers {threads} --code-version {params.code:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"
