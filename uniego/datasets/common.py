"""What every dataset adapter shares: the `Built` result and the helpers that read annotation
files and name their problems. Torch- and pandas-free at import (Snakemake imports the adapters
to plan the DAG)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from uniego.errors import UniegoError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Built:
    table: pd.DataFrame
    classes: list[str]
    unpaired: list[str] = field(default_factory=list)        # ego clips without an exo partner (by id)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # other rows left out: reason -> ids
    sources: list[str] = field(default_factory=list)         # the annotation files read


def skeleton_file(folder: str | None, sample_id: str) -> str | None:
    """Per-clip keypoints: `<folder>/<sample_id>.npz` (see docs/datasets.md, "Skeletons")."""
    return None if folder is None else os.path.join(folder, f"{sample_id}.npz")


def require_columns(table: pd.DataFrame, columns, source) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UniegoError(f"{source}: missing field(s) {', '.join(missing)} (has: {', '.join(map(str, table.columns))})",
                          stage="manifest")


def require_keys(obj: dict, keys, where: str) -> None:
    if not isinstance(obj, dict):
        raise UniegoError(f"{where}: expected an object, found {type(obj).__name__}", stage="manifest")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise UniegoError(f"{where}: missing field(s) {', '.join(missing)} (has: {', '.join(map(str, obj))})",
                          stage="manifest")


def read_json(path: Path):
    import json
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UniegoError(f"cannot read {path}: {type(e).__name__}: {e}", stage="manifest") from None


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    import pandas as pd

    from uniego.manifest import COLUMNS
    cols = [c for c in COLUMNS if c != "dataset"]
    return pd.DataFrame(rows, columns=cols)
