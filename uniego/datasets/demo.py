"""The built-in synthetic ego-exo dataset (`uniego demo-data`): annotations.csv + classes.txt."""

from __future__ import annotations

from pathlib import Path

from uniego.datasets import Built

GENERATED = True   # its root is a rule's output, so there is nothing to check before the DAG runs
DEFAULTS: dict = {}
LAYOUT = """  annotations.csv, classes.txt, videos and skeletons written by `uniego demo-data`"""


def annotation_files(root: Path, opts: dict) -> list[Path]:
    return [root / "annotations.csv", root / "classes.txt"]


def skeleton_source(root: Path, opts: dict) -> str | None:
    return str(root / "skeletons")


def build(root: Path, opts: dict, ds: str) -> Built:
    from uniego.manifest import build_demo_manifest
    table, classes = build_demo_manifest(root, ds)
    return Built(table, classes, sources=[str(f) for f in annotation_files(root, opts)])
