# Teachers: the task teachers trained on the train split (exo_rgb, exo_skl with
# `finetune: true`), then the feature cache, one Zarr store per teacher (DESIGN §4).


rule train_teacher:
    input:
        unpack(clip_inputs),
        manifest="results/{ds}/manifest.parquet",
        weights=weights_file,
    output:
        "results/{ds}/teachers/{teacher}.pt",
    log:
        "logs/{ds}/train_teacher/{teacher}.log",
    benchmark:
        "benchmarks/rules/{ds}/train_teacher/{teacher}.tsv"
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(),
    params:
        settings=settings("train_teacher", teacher="teacher"),
        code=CODE["task_teacher"],
        clips=clip_args,
    shell:
        gpu_shell(
            "uniego train-teacher --settings {params.settings:q} --manifest {input.manifest:q} "
            "--teacher {wildcards.teacher} --clips {params.clips} --out {output:q}"
        )


rule extract:
    input:
        unpack(clip_inputs),
        unpack(task_teacher_input),
        manifest="results/{ds}/manifest.parquet",
        weights=weights_file,
    output:
        directory("results/{ds}/features/{teacher}.zarr"),
    log:
        "logs/{ds}/extract/{teacher}.log",
    benchmark:
        "benchmarks/rules/{ds}/extract/{teacher}.tsv"
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(),
    params:
        settings=settings("extract", teacher="teacher"),
        code=CODE["extract"],
        clips=clip_args,
        task=task_teacher_arg,
    shell:
        gpu_shell(
            "uniego extract --settings {params.settings:q} --manifest {input.manifest:q} "
            "--teacher {wildcards.teacher} --clips {params.clips} {params.task} --out {output:q}"
        )
