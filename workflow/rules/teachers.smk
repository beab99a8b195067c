# Teachers: the feature cache, one Zarr store per teacher (DESIGN §4).


rule extract:
    input:
        unpack(clip_inputs),
        manifest="results/{ds}/manifest.parquet",
        weights=weights_file,
    output:
        directory("results/{ds}/features/{teacher}.zarr"),
    params:
        settings=settings("extract", teacher="teacher"),
        code=CODE["extract"],
        clips=clip_args,
    threads: 2
    resources:
        gpu=1,
        batch_size=compute_setting("batch_size"),
        device=compute_setting("device"),
        precision=compute_setting("precision"),
    log:
        "logs/{ds}/extract/{teacher}.log",
    benchmark:
        "benchmarks/rules/{ds}/extract/{teacher}.tsv"
    shell:
        "uniego extract --settings {params.settings:q} --manifest {input.manifest:q} --teacher {wildcards.teacher} "
        "--clips {params.clips} --out {output:q} --workers {threads} --batch-size {resources.batch_size} "
        "--device {resources.device} --precision {resources.precision} "
        "--code-version {params.code:q} > {log:q} 2>&1"
