"""`build_teacher`: a configured teacher key -> its family's model, built and loaded.

The families (one module each) implement `uniego.teachers.base.Teacher`."""

from __future__ import annotations

import zlib

import torch

from uniego.config import TeacherSettings
from uniego.errors import UniegoError
from uniego.teachers import clip_frames, skeleton, video, vit_frames
from uniego.teachers.base import Teacher
from uniego.teachers.registry import get_arch, get_teacher


def _families():
    return {"dinov2": vit_frames.FrameViTTeacher, "depth_anything": vit_frames.FrameViTTeacher,
            "siglip": clip_frames.SigLIPTeacher, "skego": clip_frames.SkEgoStandIn,
            "timesformer": video.TimeSformerTeacher, "stgcn": skeleton.STGCNTeacher}


def build_teacher(settings: TeacherSettings, *, seed: int = 0) -> Teacher:
    """Build teacher `settings.key` on its configured architecture and weights, in eval mode.

    Random initialisation is seeded by (seed, teacher key), so it is reproducible. A full-size
    architecture with `weights: random` is allowed but its features are labelled a stand-in.
    """
    spec = get_teacher(settings.key)
    arch = get_arch(settings.arch)
    if arch.family != spec.family:
        raise UniegoError(f"teachers.{spec.key}.arch: {arch.name} is a {arch.family} architecture, "
                          f"{spec.key} needs a {spec.family} one", stage="config")
    torch.manual_seed((seed * 1_000_003 + zlib.crc32(spec.key.encode())) % 2**63)
    teacher = _families()[arch.family](spec, arch, settings)
    return teacher.eval().requires_grad_(False)
