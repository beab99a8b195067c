"""Shared fixtures: one tiny demo dataset, its manifest and clip caches per test session."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from uniego.config import ClipSettings, DemoPreset, load_yaml, validate_config

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = ("Snakefile", "config.yaml", "workflow", "envs")   # what `snakemake` needs in a copy of the repo


def copy_workflow(dest: Path, *extra: str) -> Path:
    """Copy the workflow (and `extra` repo paths, e.g. "tests") into `dest`, to run Snakemake there."""
    import shutil

    for item in (*WORKFLOW, *extra):
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy)(REPO / item, Path(dest) / item)
    return Path(dest)
TINY = DemoPreset(clips_per_class=3, size=64, fps=12, seconds=1.5, sessions=2, actions_per_session=2)
TINY_CLIPS = ClipSettings(num_frames=4, size=48, sampling="uniform", stride=2, skeleton_frames=16)


@pytest.fixture
def config() -> dict:
    """The repository's config.yaml, validated (a fresh copy per test)."""
    return copy.deepcopy(validate_config(load_yaml(REPO / "config.yaml")))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny demo dataset (27 clips) with manifest and ego/exo/skeleton clip caches."""
    from uniego.clips import build_clip_cache
    from uniego.datasets.demo import read_annotations
    from uniego.demo.generate import generate
    from uniego.manifest import write_manifest

    base = tmp_path_factory.mktemp("tiny")
    root = generate(base / "data", TINY, seed=7, workers=2)
    table, classes = read_annotations(root, "demo")
    manifest = base / "manifest.parquet"
    write_manifest(table, classes, manifest)
    clips = {v: str(build_clip_cache(manifest, v, base / f"clips/{v}.zarr", TINY_CLIPS, workers=0)) for v in ("ego", "exo", "skeleton")}
    return {"root": root, "manifest": manifest, "clips": clips, "table": table, "classes": classes, "base": base}
