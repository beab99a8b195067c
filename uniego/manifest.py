"""`results/{ds}/manifest.parquet`: one row per clip, validated.

Columns: sample_id, split, label, class_name, ego_video, exo_video, start, end (seconds, the
labelled segment), skeleton (exo 2-D keypoints file), dataset. The class list travels in the
parquet metadata (`uniego` key). Every check names the annotation file and row.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from uniego.errors import UniegoError

COLUMNS = ["sample_id", "split", "label", "class_name", "ego_video", "exo_video", "start", "end", "skeleton", "dataset"]
SPLITS = ("train", "val", "test")


def validate_rows(table: pd.DataFrame, classes: list[str], *, source: str, check_files: bool = True,
                  csv_rows: bool = True) -> None:
    """Duplicate ids, unknown labels, bad splits, end <= start and missing files are errors.
    `csv_rows`: the table's rows are the lines of the CSV `source` (messages give the line)."""
    problems = []
    if csv_rows:
        where = lambda i: f"{source} row {i + 2} (sample {table.sample_id.iloc[i]!r})"  # noqa: E731  +2: header, 1-based
    else:
        where = lambda i: f"{source}: sample {table.sample_id.iloc[i]!r}"  # noqa: E731
    dup = table.sample_id[table.sample_id.duplicated(keep=False)]
    for i in dup.index:
        problems.append(f"{where(i)}: duplicate sample_id")
    for i, row in enumerate(table.itertuples(index=False)):
        if row.class_name not in classes:
            problems.append(f"{where(i)}: label {row.class_name!r} is not in the class list ({', '.join(classes)})")
        if row.split not in SPLITS:
            problems.append(f"{where(i)}: split {row.split!r} is not one of {', '.join(SPLITS)}")
        if not (row.end > row.start):
            problems.append(f"{where(i)}: end ({row.end}) <= start ({row.start})")
        if check_files:
            for col in ("ego_video", "exo_video", "skeleton"):
                path = getattr(row, col)
                if col == "skeleton" and path is None:  # no pose source: only the skeleton teachers need one
                    continue
                if not isinstance(path, str) or not os.path.isfile(path):
                    problems.append(f"{where(i)}: {col} file {path} does not exist")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise UniegoError("bad annotations:\n  " + "\n  ".join(shown), stage="manifest")


def write_manifest(table: pd.DataFrame, classes: list[str], path: str | Path, *, extra: dict | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"classes": classes, **(extra or {})}
    t = pa.Table.from_pandas(table, preserve_index=False)
    meta["content_sha256"] = content_sha256(t.to_pandas(), meta)   # as a reader will see it
    t = t.replace_schema_metadata({**(t.schema.metadata or {}), b"uniego": json.dumps(meta).encode()})
    tmp = path.with_name(path.name + ".partial")
    pq.write_table(t, tmp)
    os.replace(tmp, path)


def read_manifest(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """(table, classes) of a manifest written by `write_manifest`."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UniegoError(f"manifest {path} does not exist; build it first (`snakemake {path}`)", stage="manifest")
    try:
        t = pq.read_table(path)
        meta = json.loads((t.schema.metadata or {}).get(b"uniego", b"{}"))
        table = t.to_pandas()
    except Exception as e:   # pyarrow's and json's errors on a damaged file
        raise UniegoError(f"manifest {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
                          f"it is damaged; delete it and rebuild it (`snakemake {path}`)", stage="manifest") from None
    if "classes" not in meta:
        raise UniegoError(f"{path} has no uniego class list in its metadata; it was not written by uniego, or is damaged: rebuild it "
                          f"(`snakemake {path}`)", stage="manifest")
    classes = meta["classes"]
    if "label" in table.columns:   # a clip manifest (a sessions table labels frames instead)
        labels = table.label.to_numpy()
        bad = (labels < 0) | (labels >= len(classes))
        if bad.any():
            rows = table[bad]
            raise UniegoError(f"manifest {path}: {int(bad.sum())} row(s) have a label outside 0..{len(classes) - 1} (its "
                              f"{len(classes)} classes), e.g. sample {rows.sample_id.iloc[0]} label {int(rows.label.iloc[0])}; "
                              f"it was edited or is damaged: rebuild it (`snakemake {path}`)", stage="manifest")
    if "content_sha256" not in meta:
        raise UniegoError(f"manifest {path} has no content checksum: it was written by an older uniego, or is damaged; rebuild it "
                          f"(`snakemake {path}`)", stage="manifest")
    if content_sha256(table, meta) != meta["content_sha256"]:
        raise UniegoError(f"manifest {path} is damaged: its rows or metadata do not match the checksum written with them "
                          f"(content_sha256 {meta['content_sha256'][:12]}…); delete it and rebuild it (`snakemake {path}`)",
                          stage="manifest")
    return table, classes


def content_sha256(table: pd.DataFrame, meta: dict) -> str:
    """sha256 of a manifest's rows (column names, dtypes and every value, through pandas' own row
    hash) and of its uniego metadata but this checksum: written into the metadata, compared on
    every read, so a flipped byte in a data page or in the footer's class list is an error."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in meta.items() if k != "content_sha256"}, sort_keys=True).encode())
    h.update(json.dumps([[c, str(t)] for c, t in table.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return h.hexdigest()


def manifest_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
