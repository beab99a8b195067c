# uniego: UNIEGO as an incremental DAG. Rules are thin: each calls the `uniego` CLI.
# Usage: `snakemake --cores all` (demo), `snakemake results/eef/uniego.pt --cores 4 --resources gpu=4`
# (the target first: `--resources` takes every word after it, a target included).
# `uniego targets` lists every file target.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/level1.smk"
include: "workflow/rules/level2.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/export.smk"


# Cheap bookkeeping jobs run in the main process, not as cluster jobs (executor: slurm).
localrules:
    manifest,
    report,


rule all:
    default_target: True
    input:
        dataset_targets(config["dataset"]),


check_targets(workflow)
