"""The pipeline's fixed name lists, in one torch- and import-free module (the Snakefile, the
CLI, the config checks and `uniego targets` all read them)."""

VIEWS = ["ego", "exo", "skeleton"]                                 # the clip caches
STRATEGIES = ["model", "layer", "parameter", "average", "best"]   # eq. 2 granularities + two references
BASELINES = ["ego", "naive_mtd"]                                   # results/{ds}/baselines/{name}.pt
ANALYSES = ["cka", "conflict", "selection"]                        # results/{ds}/analysis/
