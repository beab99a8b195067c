"""An official UNIEGO stage-2 checkpoint imported as a uniego student checkpoint
(`uniego import-checkpoint`), so that `uniego evaluate` scores it like our own models."""

from __future__ import annotations

from pathlib import Path

from uniego.config import (
    StudentSettings,
    parse_student,
)
from uniego.errors import UniegoError
from uniego.io import read_checkpoint
from uniego.manifest import manifest_sha256, read_manifest
from uniego.stages.runner import checkpoint_meta, save_checkpoint
from uniego.student import build_student


def import_official_checkpoint(path: str, manifest: str, out: str, settings: dict, *, code_version: str = "") -> Path:
    """An official UNIEGO checkpoint (`.pyth`: `model_state` with `model.`-prefixed TimeSformer
    keys, a `head` over the dataset's classes, and the distillation `proj_layer`) -> a uniego
    student checkpoint for `manifest`, so `uniego evaluate` scores it like our own models.

    The official labels are the manifest's label indices (the uniego-csv adapter keeps them);
    `proj_layer` only served distillation and is kept aside (`official_proj`), not used."""
    from uniego.models import timesformer as tsf
    from uniego.teachers.base import file_sha256

    student = parse_student(settings["student"])
    _, classes = read_manifest(manifest)
    if not Path(path).is_file():
        raise UniegoError(f"checkpoint {path} does not exist", stage="import-checkpoint")
    obj = read_checkpoint(path, stage="import-checkpoint")
    if not isinstance(obj, dict) or "model_state" not in obj:
        raise UniegoError(f"{path} is not an official UNIEGO checkpoint (no `model_state`)", stage="import-checkpoint")
    state = tsf.official_state_dict(obj)
    proj = {k: v for k, v in state.items() if k.startswith("proj_layer.")}
    state = {k: v for k, v in state.items() if not k.startswith("proj_layer.")}
    head = state.get("head.weight")
    if head is None or head.shape[0] != len(classes):
        raise UniegoError(f"{path}: its classifier has {None if head is None else head.shape[0]} classes but the manifest "
                          f"{manifest} has {len(classes)}; import it with the manifest of its dataset", stage="import-checkpoint")
    num_frames = state["time_embed"].shape[1] if "time_embed" in state else None
    if num_frames is None:
        raise UniegoError(f"{path}: no time_embed, not a TimeSformer checkpoint", stage="import-checkpoint")
    model = build_student(StudentSettings(**{**student.__dict__, "init": "random"}), len(classes), num_frames=num_frames)
    tsf._strict_load(model, state, path)
    meta = checkpoint_meta("student", seed=None, manifest_sha256=manifest_sha256(manifest), code_version=code_version,
                           method="official_uniego", classes=classes, num_frames=int(num_frames), source=str(path),
                           source_sha256=file_sha256(path), source_epoch=obj.get("epoch"), student=student.__dict__)
    return save_checkpoint(out, {"encoder": model.state_dict(), "official_proj": proj}, meta)


