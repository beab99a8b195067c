# uniego: UNIEGO as an incremental DAG. Rules are thin: each calls the `uniego` CLI.
# Usage: `snakemake --cores all` (demo), `snakemake --cores 4 --resources gpu=4 results/eef/uniego.pt`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/level1.smk"
include: "workflow/rules/level2.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"


# Cheap bookkeeping jobs run in the main process, not as cluster jobs (executor: slurm).
localrules:
    manifest,
    report,


rule all:
    default_target: True
    input:
        dataset_targets(config["dataset"]),
