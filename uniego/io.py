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


CHECKSUM_KEY = "checksum"


def json_checksum(obj: dict) -> str:
    """sha256 of a report's content without its own `checksum` key, in canonical JSON (sorted
    keys, no spaces; floats as Python writes them, which read back exactly)."""
    import hashlib

    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def atomic_write_json(path: str | Path, obj) -> Path:
    """A JSON report, atomically. A dict gains a `checksum` of its content, which `read_json`
    checks, so a value edited or damaged after the pipeline wrote it is an error, not a number."""
    if isinstance(obj, dict):
        obj = {**{k: v for k, v in obj.items() if k != CHECKSUM_KEY}, CHECKSUM_KEY: json_checksum(obj)}
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | Path, *, stage: str, rebuild: str | None = None):
    """A JSON report the pipeline wrote (`atomic_write_json`), its checksum verified. Unreadable,
    damaged, edited or unchecksummed files raise UniegoError naming the file and how to remake it."""
    from uniego.errors import UniegoError

    path = Path(path)
    remake = rebuild or f"delete it and rerun the target that needs it (snakemake rebuilds {path})"
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UniegoError(f"report {path} cannot be read ({type(e).__name__}: {e}); {remake}", stage=stage) from None
    if not isinstance(obj, dict) or CHECKSUM_KEY not in obj:
        raise UniegoError(f"report {path} has no `{CHECKSUM_KEY}`: it was not written by this version of the pipeline "
                          f"(or was written by hand); {remake}", stage=stage)
    if obj[CHECKSUM_KEY] != json_checksum(obj):
        raise UniegoError(f"report {path} does not match its checksum: a value was changed after the pipeline wrote "
                          f"it (edited or damaged); {remake}", stage=stage)
    return {k: v for k, v in obj.items() if k != CHECKSUM_KEY}


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
    try:
        torch.save(obj, tmp)
    except (OSError, RuntimeError) as e:   # torch's zip writer reports a full disk as "file write failed"
        tmp.unlink(missing_ok=True)
        raise_if_disk_full(path, e)
        raise
    os.replace(tmp, path)
    return path


def raise_if_disk_full(path: str | Path, error: Exception) -> None:
    """A write that failed because the disk is full becomes the one message that says so."""
    import errno
    import shutil

    from uniego.errors import UniegoError

    free = shutil.disk_usage(Path(path).parent).free
    if getattr(error, "errno", None) == errno.ENOSPC or free < (16 << 20):
        raise UniegoError(f"the disk is full: writing {path} failed with {free / 2**20:.1f} MiB free on its disk. Free "
                          "space there (or move results/ to a larger disk) and rerun: finished work is kept and an "
                          "interrupted run resumes", stage="save") from None


def numpy_safe_globals() -> list:
    """The numpy objects mmcv / pyskl checkpoints pickle in their `meta` (scalars, arrays,
    dtypes), under numpy 2's names and numpy 1's (`numpy.core.multiarray.*`). torch.load with
    weights_only=True accepts exactly these beside tensors; any other global, so any code, is
    still refused."""
    import numpy as np

    core = (np._core if hasattr(np, "_core") else np.core).multiarray   # numpy 2, or numpy 1
    allowed = [np.dtype, np.ndarray, core.scalar, core._reconstruct,
               (core.scalar, "numpy.core.multiarray.scalar"), (core._reconstruct, "numpy.core.multiarray._reconstruct")]
    return allowed + [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]


def torch_load(path: str | Path):
    """torch.load(path, weights_only=True) on CPU, numpy metadata allowed (numpy_safe_globals)."""
    import torch

    with torch.serialization.safe_globals(numpy_safe_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: str | Path, *, stage: str):
    """torch.load(weights_only=True), or a named error for a file torch cannot read (truncated,
    damaged, or not a checkpoint)."""
    from uniego.errors import UniegoError

    try:
        return torch_load(path)
    except Exception as e:   # EOFError, RuntimeError (zip), UnpicklingError, ...: all mean "not readable"
        raise UniegoError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
                          "It is truncated, damaged or not a torch checkpoint: rebuild it (delete it and rerun "
                          "snakemake), or pass the right file", stage=stage) from None
