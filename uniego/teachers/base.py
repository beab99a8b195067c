"""The Teacher interface every family implements, and weights resolution.

A Teacher is an nn.Module with:
  inputs                      clip caches it reads (ego, exo, skeleton)
  frames_from                 `video` (an image teacher's frames decoded from the source video, at
                              its own resolution) or `cache` (the clip cache's resized frames)
  preprocess(sample) -> dict  one sample's frames / skeletons -> model-ready tensors (runs in workers)
  forward(batch) -> Tensor    [B, D] or [B, T, D] (per frame), the documented feature
  provenance() -> dict        JSON-able facts written into the feature store
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from uniego.config import TeacherSettings
from uniego.errors import UniegoError
from uniego.teachers.registry import ArchSpec, TeacherSpec
from uniego.teachers.transforms import apply


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def state_sha256(module: nn.Module) -> str:
    """Hash of the weights actually in the model (covers random init, hub and file weights)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def load_state_file(path: str | Path, *, key: str) -> dict:
    """torch.load(weights_only=True) of a teacher checkpoint named in config (numpy metadata,
    as mmcv / pyskl checkpoints carry, allowed: `uniego.io.torch_load`)."""
    from uniego.io import torch_load

    path = Path(path)
    try:
        obj = torch_load(path)
    except Exception as e:  # a pickle with code, a truncated file, not a checkpoint
        raise UniegoError(f"teachers.{key}.weights: cannot load {path} safely (weights_only=True): {e}",
                          stage="extract") from None
    if not isinstance(obj, dict):
        raise UniegoError(f"teachers.{key}.weights: {path} holds a {type(obj).__name__}, not a state dict", stage="extract")
    return obj


def strict_load(module: nn.Module, state: dict, source) -> None:
    from uniego.models.timesformer import _strict_load
    _strict_load(module, state, source)


def standin_training(weights: str) -> dict | None:
    """What a corpus-trained stand-in checkpoint learned from: its `{weights}.json` sidecar
    (written by `uniego pretrain`), summarised; None for any other weights."""
    from uniego.io import read_json

    side = Path(str(weights) + ".json")
    if weights == "random" or weights.startswith(("hub:", "import:")) or not side.is_file():
        return None
    r = read_json(side, stage="extract", rebuild=f"rebuild the stand-in (snakemake --forcerun {weights})")
    return {"objective": r["objective"], "corpus": r["trained_on"], "epochs": sum(1 for h in r["history"] if h["epoch"] > 0),
            "final": r["history"][-1] if r["history"] else None, "code_version": r.get("code_version", "")}


def frames_from(spec: TeacherSpec, arch: ArchSpec, settings: TeacherSettings) -> str:
    """Where a teacher's frames come from (`teachers.<key>.frames_from`). An image teacher (one feature
    per frame: DINOv2, SigLIP, Depth Anything, Sk-Ego) reads the source video by default, the
    frames the clip cache sampled (its `frame_time`) at the video's own resolution, so that its
    eval transform resizes from the original pixels as its original code does; `cache` gives it
    the clip cache's resized frames instead (a fast path for videos already at the cache's size,
    as the demo's). The video teachers (TimeSformer, ST-GCN) read the caches they were trained on."""
    if not arch.per_frame:
        if settings.frames_from == "video":
            raise UniegoError(f"teachers.{spec.key}.frames_from: video is for the image teachers; {arch.name} reads the clip "
                              "cache it is trained on (remove the key)", stage="config")
        return "cache"
    return settings.frames_from or "video"


class Teacher(nn.Module):
    """Base class: holds the spec, architecture, settings and the weights identity."""

    def __init__(self, spec: TeacherSpec, arch: ArchSpec, settings: TeacherSettings):
        super().__init__()
        self.spec, self.arch, self.settings = spec, arch, settings
        self.inputs = spec.inputs
        self.pooling = settings.pooling or arch.pooling
        if self.pooling not in arch.poolings:
            raise UniegoError(f"teachers.{spec.key}.pooling: {self.pooling!r} is not available for {arch.name} "
                              f"(choose from {', '.join(arch.poolings)})", stage="config")
        self.input_size = settings.input_size or arch.input_size
        self.frames_from = frames_from(spec, arch, settings)
        self.weights_file_sha256: str | None = None

    @property
    def feature_dim(self) -> int:
        return self.arch.feature_dim

    def transform(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames [T, H, W, 3] -> [T, 3, h, w] by the original's eval transform
        (`arch.transform`, uniego.teachers.transforms)."""
        return apply(self.arch.transform, frames, self.input_size, self.arch.mean, self.arch.std)

    def weights_kind(self) -> str:
        """'random' | 'hub' | 'file' (a file must exist; its sha256 is recorded)."""
        w = self.settings.weights
        if w == "random":
            return "random"
        if w.startswith("hub:"):
            return "hub"
        if not Path(w).is_file():
            raise UniegoError(f"teachers.{self.spec.key}.weights: file {w} does not exist. Give a local checkpoint, "
                              "`hub:<name>`, or `random`.", stage="extract")
        self.weights_file_sha256 = file_sha256(w)
        return "file"

    def resolve_weights(self) -> tuple[str, object]:
        """('random', None) | ('hub', name) | ('file', the loaded checkpoint object)."""
        kind = self.weights_kind()
        w = self.settings.weights
        if kind == "file":
            return kind, load_state_file(w, key=self.spec.key)
        return kind, (w[len("hub:"):] if kind == "hub" else None)

    def provenance(self) -> dict:
        return {
            "teacher": self.spec.key, "paper_model": self.spec.paper_model, "stand_in": bool(self._stand_in_reason()),
            "stand_in_reason": self._stand_in_reason(),
            "view": self.spec.view, "modality": self.spec.modality, "inputs": list(self.spec.inputs),
            "family": self.arch.family, "architecture": self.arch.name, "architecture_description": self.arch.description,
            "weights": self.settings.weights, "weights_sha256": self.weights_file_sha256,
            "state_sha256": state_sha256(self), "pooling": self.pooling, "input_size": self.input_size,
            "transform": self.arch.transform, "frames_from": self.frames_from,
            "mean": list(self.arch.mean), "std": list(self.arch.std), "feature_dim": self.feature_dim,
            "per_frame": self.arch.per_frame, "trained_on": standin_training(self.settings.weights),
        }

    def _stand_in_reason(self) -> str | None:
        reasons = []
        if self.spec.stand_in:
            reasons.append(self.arch.description)
        if self.settings.weights == "random":
            reasons.append(f"random-initialised {self.arch.name}, not trained {self.spec.paper_model} weights")
        elif self.arch.test:
            reasons.append(f"tiny test architecture {self.arch.name}, not {self.spec.paper_model}")
        trained = standin_training(self.settings.weights)
        if trained is not None:
            reasons.append(f"trained on the demo's pretraining corpus ({trained['corpus']['path']}, "
                           f"{trained['corpus']['train_clips']} clips): {trained['objective']}")
        return "; ".join(reasons) or None
