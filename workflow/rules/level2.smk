# Level II: merge the proxies (eq. 2), SPD (eq. 4-6), and the baselines with the same engine.


rule merge:
    input:
        unpack(proxy_inputs),
        unpack(proxy_output_inputs),
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
    output:
        "results/{ds}/merge/{strategy}.pt",
    log:
        "logs/{ds}/merge/{strategy}.log",
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(gpus_per_job),
    params:
        settings=settings("merge"),
        code=CODE["level2"],
        proxies=pairs("proxy"),
        outputs=pairs("outputs"),
    shell:
        gpu_shell(
            "uniego merge --settings {params.settings:q} --strategy {wildcards.strategy} --manifest {input.manifest:q} "
            "--clips {input.clips:q} --proxies {params.proxies} --proxy-outputs {params.outputs} --out {output:q}",
            procs=True,
        )


# spd and spd_ablation run the same command; an ablation overlays the spd settings with its own
# keys and may start from another merge.
SPD_SHELL = gpu_shell(
    "uniego spd --settings {params.settings:q} --manifest {input.manifest:q} --clips {input.clips:q} "
    "--init {params.init:q} --outputs {params.outputs} --out {output:q}",
    batch_size=False,
    procs=True,
)


rule spd:
    input:
        unpack(spd_inputs(spd_init)),
    output:
        "results/{ds}/uniego.pt",
    log:
        "logs/{ds}/spd.log",
    benchmark:
        "benchmarks/rules/{ds}/spd.tsv"
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(gpus_per_job, batch_size=False),
    params:
        settings=settings("spd"),
        code=CODE["level2"],
        outputs=pairs("outputs"),
        init=spd_init,
    shell:
        SPD_SHELL


rule baseline:
    input:
        unpack(baseline_inputs),
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
        init=student_init_file,
    output:
        "results/{ds}/baselines/{baseline}.pt",
    log:
        "logs/{ds}/baselines/{baseline}.log",
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(gpus_per_job, batch_size=False),
    params:
        settings=settings("baseline"),
        code=CODE["level2"],
        features=pairs("features"),
    shell:
        gpu_shell(
            "uniego baseline --settings {params.settings:q} --name {wildcards.baseline} --manifest {input.manifest:q} "
            "--clips {input.clips:q} --features {params.features} --out {output:q}",
            batch_size=False,
            procs=True,
        )


rule spd_ablation:
    """An SPD variant (config `ablations`): the spd section overlaid by the ablation's keys."""
    input:
        unpack(spd_inputs(ablation_init)),
    output:
        "results/{ds}/ablations/{ablation}.pt",
    log:
        "logs/{ds}/ablations/{ablation}.log",
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(gpus_per_job, batch_size=False),
    params:
        settings=settings("spd", ablation="ablation"),
        code=CODE["level2"],
        outputs=pairs("outputs"),
        init=ablation_init,
    shell:
        SPD_SHELL
