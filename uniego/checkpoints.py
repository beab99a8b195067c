"""uniego model checkpoints: their one schema, and how to load one, rebuild its encoder and run
it on clips. Written by the stage runner (`uniego.stages.runner.save_checkpoint`).

A checkpoint is `{"encoder": state dict, ..., "meta": {...}}`; `meta` starts with
CHECKPOINT_META: what it is (`kind`), from what (`manifest_sha256`, `seed`), by which code
(`code_version`, `uniego_version`; the save adds `environment`) and how its training went
(`history`, `final_metrics`; empty for one that was not trained, such as the average merge).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from uniego.config import StudentSettings
from uniego.data import ClipBatches, ClipSource
from uniego.engine import whole_batches
from uniego.errors import UniegoError
from uniego.io import read_checkpoint
from uniego.student import build_student

CHECKPOINT_META = ("kind", "seed", "manifest_sha256", "code_version", "uniego_version", "history", "final_metrics")
KINDS = ("task_teacher", "proxy", "merged", "student")
ENCODER_KINDS = ("proxy", "merged", "student")   # the ones that hold a student encoder


def load_model(path: str, *, stage: str = "level2") -> dict:
    """A proxy, merged or student checkpoint (weights only), or a named error."""
    p = Path(path)
    if not p.is_file():
        raise UniegoError(f"model checkpoint {p} does not exist; build it first (snakemake {p})", stage=stage)
    obj = read_checkpoint(p, stage=stage)
    if not isinstance(obj, dict) or not isinstance(obj.get("meta"), dict) or obj["meta"].get("kind") not in ENCODER_KINDS:
        raise UniegoError(f"{p} is not a uniego model checkpoint (a proxy, merged or student .pt)", stage=stage)
    return obj


def check_checkpoint_fits(obj: dict, path: str | Path, *, classes=None, num_frames: int | None = None, stage: str) -> None:
    """A checkpoint must predict the manifest's classes, in order, and take the clips' frame
    count; otherwise a named error with both sides."""
    meta = obj["meta"]
    if classes is not None and list(meta.get("classes") or []) != list(classes):
        have = list(meta.get("classes") or [])
        raise UniegoError(f"checkpoint {path} predicts {len(have)} classes ({', '.join(map(str, have[:4]))}"
                          f"{' ...' if len(have) > 4 else ''}), but the manifest has {len(classes)} "
                          f"({', '.join(map(str, list(classes)[:4]))}{' ...' if len(classes) > 4 else ''}): "
                          "it was trained on another dataset or class list", stage=stage)
    if num_frames is not None and meta.get("num_frames") not in (None, num_frames):
        raise UniegoError(f"checkpoint {path} takes {meta['num_frames']}-frame clips, but the clip cache has {num_frames} "
                          "frames per clip: pass the clip cache built with the checkpoint's clip settings", stage=stage)


def encoder_from_checkpoint(obj: dict, student: StudentSettings):
    """The checkpoint's encoder, rebuilt from `student` (its architecture) and loaded strictly."""
    meta = obj["meta"]
    model = build_student(StudentSettings(**{**student.__dict__, "init": "random"}), len(meta["classes"]),
                          num_frames=meta["num_frames"])
    try:
        model.load_state_dict(obj["encoder"], strict=True)
    except RuntimeError as e:
        have = (meta.get("student") or {}).get("arch") if isinstance(meta.get("student"), dict) else None
        raise UniegoError(f"the checkpoint's encoder{f' ({have})' if have else ''} does not fit student.arch "
                          f"{student.arch} (input {student.input_size}): "
                          f"{str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}. Pass a checkpoint "
                          "of this architecture, or set student to the one it was trained with", stage="checkpoint") from None
    return model


@torch.inference_mode()
def predict(encoder, source: ClipSource, student: StudentSettings, *, device, batch_size: int = 8, workers: int = 0,
            crop: int = 1):
    """CLS features [N, D] and logits [N, C] on a deterministic eval view, in source order."""
    batches = [np.arange(i, min(i + batch_size, len(source))) for i in range(0, len(source), batch_size)]
    loader = DataLoader(ClipBatches(source, np.zeros(len(source), np.int64), student, batches, epoch=0, seed=0, train=False,
                                    crop=crop), batch_size=None, collate_fn=whole_batches, num_workers=workers)
    encoder.eval().to(device)
    feats, logits = [], []
    for batch in loader:
        h = encoder.forward_features(batch["clip"].to(device))
        feats.append(h.float().cpu())
        logits.append(encoder.head(h).float().cpu())
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


