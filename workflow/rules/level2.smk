# Level II: merge the proxies (eq. 2), SPD (eq. 4-6), and the baselines with the same engine.


rule merge:
    input:
        unpack(proxy_inputs),
        unpack(proxy_output_inputs),
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
    output:
        "results/{ds}/merge/{strategy}.pt",
    params:
        settings=settings("merge"),
        code=CODE["level2"],
        proxies=lambda wc, input: pairs(wc, input, "proxy"),
        outputs=lambda wc, input: pairs(wc, input, "outputs"),
    threads: compute_setting("threads")
    resources:
        workers=loader_workers,
        gpu=gpus_per_job,
        **gpu_slot_resources(),
        batch_size=compute_setting("batch_size"),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/merge/{strategy}.log",
    shell:
        GPU_SLOTS + "uniego merge --settings {params.settings:q} --strategy {wildcards.strategy} --manifest {input.manifest:q} "
        "--clips {input.clips:q} --proxies {params.proxies} --proxy-outputs {params.outputs} --out {output:q} --workers {resources.workers} "
        "--batch-size {resources.batch_size} --procs {resources.gpu} --device {resources.device} --precision {resources.precision} "
        "--code-version {params.code:q} > {log:q} 2>&1"


rule spd:
    input:
        unpack(proxy_output_inputs),
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
        init=spd_init,
    output:
        "results/{ds}/uniego.pt",
    params:
        settings=settings("spd"),
        code=CODE["level2"],
        outputs=lambda wc, input: pairs(wc, input, "outputs"),
    threads: compute_setting("threads")
    resources:
        workers=loader_workers,
        gpu=gpus_per_job,
        **gpu_slot_resources(),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/spd.log",
    benchmark:
        "benchmarks/rules/{ds}/spd.tsv"
    shell:
        GPU_SLOTS + "uniego spd --settings {params.settings:q} --manifest {input.manifest:q} --clips {input.clips:q} "
        "--init {input.init:q} --outputs {params.outputs} --out {output:q} --workers {resources.workers} "
        "--procs {resources.gpu} --device {resources.device} --precision {resources.precision} --code-version {params.code:q} > {log:q} 2>&1"


rule baseline:
    input:
        unpack(baseline_inputs),
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
        init=student_init_file,
    output:
        "results/{ds}/baselines/{baseline}.pt",
    params:
        settings=settings("baseline"),
        code=CODE["level2"],
        features=lambda wc, input: pairs(wc, input, "features"),
    threads: compute_setting("threads")
    resources:
        workers=loader_workers,
        gpu=gpus_per_job,
        **gpu_slot_resources(),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/baselines/{baseline}.log",
    shell:
        GPU_SLOTS + "uniego baseline --settings {params.settings:q} --name {wildcards.baseline} --manifest {input.manifest:q} "
        "--clips {input.clips:q} --features {params.features} --out {output:q} --workers {resources.workers} "
        "--procs {resources.gpu} --device {resources.device} --precision {resources.precision} --code-version {params.code:q} > {log:q} 2>&1"


rule spd_ablation:
    """An SPD variant (config `ablations`): the spd section overlaid by the ablation's keys."""
    input:
        unpack(proxy_output_inputs),
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
        init=ablation_init,
    output:
        "results/{ds}/ablations/{ablation}.pt",
    params:
        settings=settings("spd", ablation="ablation"),
        code=CODE["level2"],
        outputs=lambda wc, input: pairs(wc, input, "outputs"),
    threads: compute_setting("threads")
    resources:
        workers=loader_workers,
        gpu=gpus_per_job,
        **gpu_slot_resources(),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/ablations/{ablation}.log",
    shell:
        GPU_SLOTS + "uniego spd --settings {params.settings:q} --manifest {input.manifest:q} --clips {input.clips:q} "
        "--init {input.init:q} --outputs {params.outputs} --out {output:q} --workers {resources.workers} "
        "--procs {resources.gpu} --device {resources.device} --precision {resources.precision} --code-version {params.code:q} > {log:q} 2>&1"
