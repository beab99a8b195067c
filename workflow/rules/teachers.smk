# Teachers: the task teachers trained on the train split (exo_rgb, exo_skl with
# `finetune: true`), then the feature cache, one Zarr store per teacher (DESIGN §4).


rule train_teacher:
    input:
        unpack(clip_inputs),
        manifest="results/{ds}/manifest.parquet",
        weights=weights_file,
    output:
        "results/{ds}/teachers/{teacher}.pt",
    params:
        settings=settings("train_teacher", teacher="teacher"),
        code=CODE["task_teacher"],
        clips=clip_args,
    threads: compute_setting("threads")
    resources:
        workers=loader_workers,
        gpu=1,
        **gpu_slot_resources(),
        batch_size=compute_setting("batch_size"),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/train_teacher/{teacher}.log",
    benchmark:
        "benchmarks/rules/{ds}/train_teacher/{teacher}.tsv"
    shell:
        GPU_SLOTS + "uniego train-teacher --settings {params.settings:q} --manifest {input.manifest:q} --teacher {wildcards.teacher} "
        "--clips {params.clips} --out {output:q} --workers {resources.workers} --batch-size {resources.batch_size} "
        "--device {resources.device} --precision {resources.precision} --code-version {params.code:q} > {log:q} 2>&1"


rule extract:
    input:
        unpack(clip_inputs),
        unpack(task_teacher_input),
        manifest="results/{ds}/manifest.parquet",
        weights=weights_file,
    output:
        directory("results/{ds}/features/{teacher}.zarr"),
    params:
        settings=settings("extract", teacher="teacher"),
        code=CODE["extract"],
        clips=clip_args,
        task=task_teacher_arg,
    threads: compute_setting("threads")
    resources:
        workers=loader_workers,
        gpu=1,
        **gpu_slot_resources(),
        batch_size=compute_setting("batch_size"),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/extract/{teacher}.log",
    benchmark:
        "benchmarks/rules/{ds}/extract/{teacher}.tsv"
    shell:
        GPU_SLOTS + "uniego extract --settings {params.settings:q} --manifest {input.manifest:q} --teacher {wildcards.teacher} "
        "--clips {params.clips} {params.task} --out {output:q} --workers {resources.workers} --batch-size {resources.batch_size} "
        "--device {resources.device} --precision {resources.precision} "
        "--code-version {params.code:q} > {log:q} 2>&1"
