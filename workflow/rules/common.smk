# Helpers shared by the rules: config validation at DAG-build time, per-rule settings
# (the result-affecting config sub-tree, passed through params so edits rerun exactly the
# dependent jobs), code versions, input functions and target lists.
import sys

from uniego.config import canonical_json, code_version, dataset_config, stage_settings, validate_config
from uniego.errors import UniegoError
from uniego.teachers.registry import TEACHERS, get_teacher

try:
    validate_config(config)
except UniegoError as _e:
    sys.exit(f"uniego: {_e}")

VIEWS = ["ego", "exo", "skeleton"]


wildcard_constraints:
    ds="|".join(config["datasets"]),
    teacher="|".join(TEACHERS),
    view="|".join(VIEWS),


def settings(stage, **kw):
    """params function: the stage's settings as canonical JSON."""
    return lambda wc: canonical_json(stage_settings(config, wc.ds, stage, **{k: getattr(wc, v) for k, v in kw.items()}))


CODE = {
    "demo_data": code_version("uniego.demo"),
    "manifest": code_version("uniego.manifest"),
    "clips": code_version("uniego.clips", "uniego.video", "uniego.cache"),
    "extract": code_version("uniego.extract", "uniego.teachers", "uniego.models", "uniego.cache"),
    "level1": code_version("uniego.proxy", "uniego.engine", "uniego.data", "uniego.student", "uniego.losses",
                           "uniego.models", "uniego.cache"),
}


def compute_setting(key):
    """resources function: a `compute` value (throughput only; resources never trigger reruns)."""
    return lambda wc: dataset_config(config, wc.ds)["compute"][key]


def dataset_root(wc):
    return config["datasets"][wc.ds]["root"]


def clip_inputs(wc):
    return {v: f"results/{wc.ds}/clips/{v}.zarr" for v in get_teacher(wc.teacher).inputs}


def clip_args(wc, input):
    return " ".join(f"{v}={input[v]}" for v in get_teacher(wc.teacher).inputs)


def weights_file(wc):
    """The teacher's local weights file, so replacing it reruns the extraction."""
    w = dataset_config(config, wc.ds)["teachers"][wc.teacher]["weights"]
    return [] if w == "random" or w.startswith("hub:") else [w]


def dataset_targets(ds):
    return ([f"results/{ds}/manifest.parquet"]
            + [f"results/{ds}/clips/{v}.zarr" for v in VIEWS]
            + [f"results/{ds}/features/{t}.zarr" for t in TEACHERS])
