"""Atomic writes: a result file appears complete or not at all (written to `<name>.partial`,
then renamed), so an interrupted job never leaves a file a rerun would take as done.
Under torchrun only rank 0 writes (the other ranks compute the same result)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _other_rank() -> bool:
    return os.environ.get("RANK", "0") != "0"


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    if _other_rank():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj, path: str | Path) -> Path:
    """torch.save, atomically; a checkpoint's `meta` gains `environment` (uniego.provenance)."""
    import torch

    path = Path(path)
    if _other_rank():
        return path
    if isinstance(obj, dict) and isinstance(obj.get("meta"), dict):   # every checkpoint says what made it
        from uniego.provenance import environment
        obj = {**obj, "meta": {**obj["meta"], "environment": environment()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path
