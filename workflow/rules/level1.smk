# Level I: one proxy per teacher (eq. 1), then its outputs on the train split (SPD targets).


rule train_proxy:
    input:
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
        features="results/{ds}/features/{teacher}.zarr",
        init=student_init_file,
    output:
        "results/{ds}/proxies/{teacher}.pt",
    params:
        settings=settings("train_proxy", teacher="teacher"),
        code=CODE["level1"],
    threads: compute_setting("threads")
    resources:
        workers=loader_workers,
        gpu=gpus_per_job,
        **gpu_slot_resources(),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/train_proxy/{teacher}.log",
    benchmark:
        "benchmarks/rules/{ds}/train_proxy/{teacher}.tsv"
    shell:
        GPU_SLOTS + "uniego train-proxy --settings {params.settings:q} --teacher {wildcards.teacher} --manifest {input.manifest:q} "
        "--clips {input.clips:q} --features {input.features:q} --out {output:q} --workers {resources.workers} "
        "--procs {resources.gpu} --device {resources.device} --precision {resources.precision} --code-version {params.code:q} > {log:q} 2>&1"


rule proxy_outputs:
    input:
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
        proxy="results/{ds}/proxies/{teacher}.pt",
    output:
        directory("results/{ds}/proxies/{teacher}.outputs.zarr"),
    params:
        settings=settings("proxy_outputs"),
        code=CODE["level1"],
    threads: compute_setting("threads")
    resources:
        workers=loader_workers,
        gpu=1,
        **gpu_slot_resources(),
        batch_size=compute_setting("batch_size"),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/proxy_outputs/{teacher}.log",
    shell:
        GPU_SLOTS + "uniego proxy-outputs --settings {params.settings:q} --manifest {input.manifest:q} --clips {input.clips:q} "
        "--proxy {input.proxy:q} --out {output:q} --workers {resources.workers} --batch-size {resources.batch_size} "
        "--device {resources.device} --precision {resources.precision} --code-version {params.code:q} > {log:q} 2>&1"
