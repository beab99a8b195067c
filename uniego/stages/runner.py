"""The one stage runner and the one checkpoint schema (issue 21).

Every training stage (task teacher, proxy, merge, SPD, baseline, segmentation) trains through
`fit`: `uniego.engine.train` in the run folder `<out stem>.run` (resumable, locked, its log the
history), the inputs' identity recorded under one key name (`code_version` included), and the
run's history and final metrics handed back. Every model checkpoint the pipeline writes is
`{tensors..., "meta": checkpoint_meta(...)}` through `save_checkpoint`, so that `meta` always
says what it is (`kind`), from what (`manifest_sha256`, `seed`), by which code
(`code_version`, `uniego_version`, `environment`) and how its training went (`history`,
`final_metrics`; empty for a checkpoint that was not trained, such as the average merge).

The corpus pretraining (`uniego.stages.pretrain`) is the exception: it writes each stand-in in
its real architecture's checkpoint format, so that the real loaders read it, and its record
beside it as `<checkpoint>.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from uniego.checkpoints import CHECKPOINT_META, KINDS
from uniego.config import ComputeSettings, TrainSettings
from uniego.data import ClipSource
from uniego.device import resolve_device
from uniego.engine import epoch_history, train
from uniego.errors import UniegoError
from uniego.io import atomic_torch_save
from uniego.version import __version__

__all__ = ["CHECKPOINT_META", "KINDS", "checkpoint_meta", "fit", "run_folder", "save_checkpoint", "split_source"]


def split_source(table, split: str, clips: str, sha: str, *, clip_settings: dict | None = None, stage: str = "level2"):
    """The manifest rows of `split` and their clips (a ClipSource over the ego clip cache, which
    must have been built with `clip_settings` when given), or a named error when the split is empty."""
    rows = np.flatnonzero(table.split.to_numpy() == split)
    if len(rows) == 0:
        raise UniegoError(f"the manifest has no {split} samples", stage=stage)
    return rows, ClipSource(clips, list(table.sample_id.iloc[rows]), manifest_sha256=sha, clip_settings=clip_settings,
                            stage=stage)


def run_folder(out: str | Path, suffix: str = "") -> Path:
    """`results/x/name.pt` -> `results/x/name.run` (or `name.<suffix>.run`): where a stage's
    training keeps its resume state, lock and per-epoch log."""
    out = Path(out)
    return out.with_name(out.stem + (f".{suffix}" if suffix else "") + ".run")


def fit(task, make_epoch_dataset, n: int, settings: TrainSettings, *, out: str | Path, identity: dict, seed: int,
        code_version: str, compute: ComputeSettings, desc: str, optimizer: str | None = None, probe: dict | None = None,
        precision: str | None = None, run_suffix: str = "") -> dict:
    """Train `task` for a stage whose output is `out`; return {"history", "final_metrics"}.

    identity: the inputs and settings that make this run what it is; a resume state whose
    identity differs is not resumed. `code_version` joins it here, under that name, for every
    stage. See uniego.engine.train for the task protocol (model, step, epoch_end, ...)."""
    folder = run_folder(out, run_suffix)
    train(task, make_epoch_dataset, n, settings, folder, seed=seed, identity={**identity, "code_version": code_version},
          device=resolve_device(compute), precision=precision or compute.precision, workers=compute.workers, desc=desc,
          optimizer=optimizer, probe=probe)
    history = epoch_history(folder)
    return {"history": history, "final_metrics": history[-1] if history else None}


NOT_TRAINED = {"history": [], "final_metrics": None}


def checkpoint_meta(kind: str, *, seed: int | None, manifest_sha256: str, code_version: str, run: dict | None = None,
                    **fields) -> dict:
    """A checkpoint's `meta` in the one schema (CHECKPOINT_META first, then the stage's own fields);
    run: what `fit` returned, or None for a checkpoint that was not trained."""
    if kind not in KINDS:
        raise UniegoError(f"checkpoint kind {kind!r} unknown; one of {', '.join(KINDS)}")
    run = run or NOT_TRAINED
    meta = {"kind": kind, "seed": seed, "manifest_sha256": manifest_sha256, "code_version": code_version,
            "uniego_version": __version__, "history": run["history"], "final_metrics": run["final_metrics"]}
    clash = sorted(set(fields) & set(meta))
    if clash:
        raise UniegoError(f"checkpoint fields {clash} are set by the schema itself")
    return {**meta, **fields}


def save_checkpoint(out: str | Path, tensors: dict, meta: dict) -> Path:
    """Write `{**tensors, "meta": meta}` atomically (the rule's output appears only when whole);
    meta must follow the schema and be plain JSON (tuples become lists)."""
    missing = [k for k in CHECKPOINT_META if k not in meta]
    if missing:
        raise UniegoError(f"checkpoint {out}: meta lacks {missing}; build it with checkpoint_meta")
    if "meta" in tensors:
        raise UniegoError(f"checkpoint {out}: `meta` is not a tensor group")
    return atomic_torch_save({**tensors, "meta": json.loads(json.dumps(meta, default=list))}, out)
