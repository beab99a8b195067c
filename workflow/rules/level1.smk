# Level I: one proxy per teacher (eq. 1), then its outputs on the train split (SPD targets).


rule train_proxy:
    input:
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
        features="results/{ds}/features/{teacher}.zarr",
        init=student_init_file,
    output:
        "results/{ds}/proxies/{teacher}.pt",
    log:
        "logs/{ds}/train_proxy/{teacher}.log",
    benchmark:
        "benchmarks/rules/{ds}/train_proxy/{teacher}.tsv"
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(gpus_per_job, batch_size=False),
    params:
        settings=settings("train_proxy", teacher="teacher"),
        code=CODE["level1"],
    shell:
        gpu_shell(
            "uniego train-proxy --settings {params.settings:q} --teacher {wildcards.teacher} --manifest {input.manifest:q} "
            "--clips {input.clips:q} --features {input.features:q} --out {output:q}",
            batch_size=False,
            procs=True,
        )


rule proxy_outputs:
    input:
        manifest="results/{ds}/manifest.parquet",
        clips="results/{ds}/clips/ego.zarr",
        proxy="results/{ds}/proxies/{teacher}.pt",
    output:
        directory("results/{ds}/proxies/{teacher}.outputs.zarr"),
    log:
        "logs/{ds}/proxy_outputs/{teacher}.log",
    conda:
        "../../envs/uniego.yaml"
    threads: compute_setting("threads")
    resources:
        **gpu_resources(),
    params:
        settings=settings("proxy_outputs"),
        code=CODE["level1"],
    shell:
        gpu_shell(
            "uniego proxy-outputs --settings {params.settings:q} --manifest {input.manifest:q} --clips {input.clips:q} "
            "--proxy {input.proxy:q} --out {output:q}"
        )
