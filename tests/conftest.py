"""Shared fixtures: one tiny demo dataset, its manifest and clip caches per test session."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

# Without the project's packages every test module fails to import, one traceback each: say once what to do.
_MISSING = [m for m in ("torch", "zarr", "snakemake", "timm", "open_clip", "pandas", "yaml", "jsonschema")
            if importlib.util.find_spec(m) is None]
if _MISSING:
    raise pytest.UsageError(f"this Python ({__import__('sys').executable}) lacks {', '.join(_MISSING)}: install the "
                            'project first (README, "Install": pip install -r requirements/lock.txt -e ".[test]"), '
                            "then run pytest from that environment")

from uniego.config import ClipSettings, ComputeSettings, DemoPreset, load_yaml, validate_config  # noqa: E402  (after the check above)

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = ("Snakefile", "config.yaml", "workflow", "envs")   # what `snakemake` needs in a copy of the repo


def copy_workflow(dest: Path, *extra: str) -> Path:
    """Copy the workflow (and `extra` repo paths, e.g. "tests") into `dest`, to run Snakemake there."""
    import shutil

    for item in (*WORKFLOW, *extra):
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy)(REPO / item, Path(dest) / item)
    return Path(dest)


TINY = DemoPreset(clips_per_class=3, size=64, fps=12, seconds=1.5, sessions=2, actions_per_session=2)
TINY_CLIPS = ClipSettings(num_frames=4, size=48, sampling="uniform", stride=2, skeleton_frames=16, skeleton_clips=1, skeleton_sampling="uniform")


@pytest.fixture
def config() -> dict:
    """The repository's config.yaml, validated (a fresh copy per test)."""
    return copy.deepcopy(validate_config(load_yaml(REPO / "config.yaml")))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny demo dataset (27 clips) with manifest and ego/exo/skeleton clip caches."""
    from uniego.datasets.demo import read_annotations
    from uniego.demo.generate import generate
    from uniego.manifest import write_manifest
    from uniego.stages.data.clips import build_clip_cache

    base = tmp_path_factory.mktemp("tiny")
    root = generate(base / "data", TINY, seed=7, workers=2)
    table, classes = read_annotations(root, "demo")
    manifest = base / "manifest.parquet"
    write_manifest(table, classes, manifest)
    clips = {v: str(build_clip_cache(manifest, v, base / f"clips/{v}.zarr", TINY_CLIPS, workers=0)) for v in ("ego", "exo", "skeleton")}
    return {"root": root, "manifest": manifest, "clips": clips, "table": table, "classes": classes, "base": base}


# Level I / Level II on the tiny data (test_level1, test_level2, test_scale_out share them).
CPU = ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=4)
PROXY_SETTINGS = {"student": {"arch": "timesformer_test", "init": "random", "input_size": 32, "train_jitter": [32, 40]},
                  "train": {"epochs": 3, "lr": 0.005, "lr_steps": [0, 2], "lr_factors": [1.0, 0.1], "momentum": 0.9,
                            "nesterov": True, "weight_decay": 1e-4, "batch_size": 4, "accumulate": 2},
                  "level1": {"lambda_feat": 5.0, "lambda_cls": 1.0, "projection": "teacher"}, "seed": 3, "teacher": "exo_skl"}
TEACHERS = ["exo_skl", "ego_dino"]
TEACHER_ARCH = {"exo_skl": "stgcn_test", "ego_dino": "dinov2_test"}
SPD = {"init": "average", "k": 1, "mode": "topk", "beta_feat": 5.0, "beta_logit": 1.0, "beta_cls": 1.0, "tau": 1.0,
       "student_ce_filter": False, "ce_cap": None, "normalize": "paper", "micro_batch": None, "feature_projection": False}


def merge_settings(**merge) -> dict:
    """The merge stage's settings for the tiny proxies (`merge` overrides the merge section)."""
    return {"student": PROXY_SETTINGS["student"], "merge": {"lr": 0.02, "weight_decay": 0.01, "epochs": 1, "batch_size": 4, **merge},
            "teachers": TEACHERS, "seed": 0}


@pytest.fixture(scope="module")
def proxies(tiny_data, tmp_path_factory):
    """Two tiny proxies (exo_skl, ego_dino; 2 epochs from random features) and their train-split
    outputs: (folder, {teacher: proxy.pt}, {teacher: outputs.zarr})."""
    from uniego.config import TeacherSettings
    from uniego.stages.level1.proxies import export_proxy_outputs, train_proxy
    from uniego.stages.teachers.extract import extract

    base = tmp_path_factory.mktemp("level2")
    paths, outputs = {}, {}
    for i, t in enumerate(TEACHERS):
        feats = extract(tiny_data["manifest"], tiny_data["clips"], base / f"{t}.zarr", TeacherSettings(t, TEACHER_ARCH[t], "random"), compute=CPU)
        s = copy.deepcopy(PROXY_SETTINGS)
        s.update(teacher=t, seed=10 + i)
        s["train"]["epochs"] = 2
        paths[t] = str(train_proxy(tiny_data["manifest"], tiny_data["clips"]["ego"], str(feats), str(base / f"{t}.pt"), s, compute=CPU))
        outputs[t] = str(export_proxy_outputs(tiny_data["manifest"], tiny_data["clips"]["ego"], paths[t], str(base / f"{t}.outputs.zarr"),
                                              {"student": PROXY_SETTINGS["student"]}, compute=CPU))
    return base, paths, outputs
