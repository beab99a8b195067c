# Export: the UNIEGO encoder as a self-contained folder (model.safetensors, config.json, the model
# card README.md with the report's numbers, model.onnx) that uniego.load_encoder(DIR) loads.
# A named target only: `snakemake results/demo/export --cores all`.


rule export:
    input:
        unpack(export_inputs),
    output:
        directory("results/{ds}/export"),
    log:
        "logs/{ds}/export.log",
    conda:
        "../../envs/uniego.yaml"
    params:
        code=CODE["export"],
        config_sha256=config_sha256,
        segmentation=lambda wc, input: f"--segmentation {shlex.quote(input.segmentation)}" if "segmentation" in input.keys() else "",
    shell:
        "uniego export --model {input.model:q} --dataset {wildcards.ds} --recognition {input.recognition:q} "
        "--retrieval {input.retrieval:q} {params.segmentation} --config-sha256 {params.config_sha256} --out {output:q} "
        "> {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)"
