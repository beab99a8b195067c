"""The built-in synthetic ego-exo dataset (`uniego demo-data`): annotations.csv + classes.txt."""

from __future__ import annotations

from pathlib import Path

from uniego.datasets.common import Built
from uniego.errors import UniegoError

GENERATED = True   # its root is a rule's output, so there is nothing to check before the DAG runs
DEFAULTS: dict = {}
LAYOUT = """  annotations.csv, classes.txt, videos and skeletons written by `uniego demo-data`"""


def annotation_files(root: Path, opts: dict) -> list[Path]:
    return [root / "annotations.csv", root / "classes.txt"]


def skeleton_source(root: Path, opts: dict) -> str | None:
    return str(root / "skeletons")


def build(root: Path, opts: dict, ds: str) -> Built:
    table, classes = read_annotations(root, ds)
    return Built(table, classes, sources=[str(f) for f in annotation_files(root, opts)])


def read_annotations(root: str | Path, dataset: str):
    """Manifest rows from the demo dataset's annotations.csv (paths made relative to the cwd)
    and its class list: (DataFrame, classes)."""
    import pandas as pd

    from uniego.manifest import COLUMNS, validate_rows

    root = Path(root)
    ann = root / "annotations.csv"
    classes_file = root / "classes.txt"
    for f in (ann, classes_file):
        if not f.is_file():
            raise UniegoError(f"{f} does not exist: generate the demo data first (`uniego demo-data` or "
                              "`snakemake --cores all`)", stage="manifest")
    classes = [c for c in classes_file.read_text().splitlines() if c]
    table = pd.read_csv(ann, dtype={"sample_id": str, "split": str, "class_name": str})
    missing = [c for c in ("sample_id", "split", "class_name", "ego_video", "exo_video", "start", "end", "skeleton")
               if c not in table.columns]
    if missing:
        raise UniegoError(f"{ann}: missing column(s) {', '.join(missing)}", stage="manifest")
    for col in ("ego_video", "exo_video", "skeleton"):
        table[col] = [str(root / p) if isinstance(p, str) else p for p in table[col]]
    validate_rows(table, classes, source=str(ann))
    table["label"] = [classes.index(c) for c in table.class_name]
    table["dataset"] = dataset
    return table[COLUMNS].reset_index(drop=True), classes
