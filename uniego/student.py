"""The student: a TimeSformer whose feature h is the CLS after the final norm, or a
ViFi-CLIP-style CLIP frame encoder whose h is the mean frame embedding, with a classifier head
(`head`) and, for a proxy, the eq.-1 projection. Both have `forward_features`, `head` and
`embed_dim`, which is all Level I, the merge and SPD use."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from uniego.config import StudentSettings
from uniego.errors import UniegoError
from uniego.io import read_checkpoint
from uniego.models import timesformer as tsf
from uniego.models import vificlip
from uniego.teachers.registry import KINETICS_MEAN, KINETICS_STD

BUILDERS = {"timesformer_base": tsf.timesformer_base, "timesformer_test": tsf.timesformer_test,
            "vificlip_b16": vificlip.vificlip_b16, "vificlip_test": vificlip.vificlip_test}
MEAN, STD = KINETICS_MEAN, KINETICS_STD  # the official loaders' normalisation (TimeSformer)


def student_norm(arch: str) -> tuple[tuple, tuple]:
    """Input mean and std of a student architecture (Kinetics for TimeSformer, CLIP's for ViFi-CLIP)."""
    return (vificlip.CLIP_MEAN, vificlip.CLIP_STD) if arch.startswith("vificlip") else (MEAN, STD)


def build_student(settings: StudentSettings, num_classes: int, *, num_frames: int, seed: int = 0) -> tsf.TimeSformer:
    """A TimeSformer with a `num_classes` head, initialised as `settings.init` says:
    random (seeded), `hub:<timm ViT>` (ImageNet ViT inflated the TimeSformer way), or a file
    (official `.pyth`, or a uniego checkpoint with an `encoder` entry; the head is kept only if
    its class count matches)."""
    if settings.arch not in BUILDERS:
        raise UniegoError(f"student.arch {settings.arch!r} unknown; choose from {', '.join(BUILDERS)}", stage="student")
    torch.manual_seed(seed)
    if settings.arch.startswith("vificlip"):
        if settings.drop_path_rate is not None:
            raise UniegoError("student.drop_path_rate applies to TimeSformer students; remove it for ViFi-CLIP", stage="student")
        return _build_vificlip(settings, num_classes)
    extra = {} if settings.patch_size is None else {"patch_size": settings.patch_size}
    if settings.drop_path_rate is not None:
        extra["drop_path_rate"] = settings.drop_path_rate
    if settings.input_size % (settings.patch_size or 16):
        raise UniegoError(f"student.input_size {settings.input_size} is not a multiple of the patch size "
                          f"{settings.patch_size or 16}", stage="student")
    model = BUILDERS[settings.arch](img_size=settings.input_size, num_frames=num_frames, num_classes=num_classes, **extra)
    init = settings.init
    if init == "random":
        return model
    if init.startswith("hub:"):
        import timm
        vit = timm.create_model(init[len("hub:"):], pretrained=True)
        return tsf.load_imagenet_vit(model, vit.state_dict(), source=init)
    if not Path(init).is_file():
        raise UniegoError(f"student.init: file {init} does not exist (random | hub:<timm ViT> | a checkpoint file)", stage="student")
    obj = read_checkpoint(init, stage="student")
    state = obj["encoder"] if "encoder" in obj else tsf.official_state_dict(obj)
    own = model.state_dict()
    if state.get("head.weight") is not None and state["head.weight"].shape != own["head.weight"].shape:
        state = {**state, "head.weight": own["head.weight"], "head.bias": own["head.bias"]}
    tsf._strict_load(model, state, init)
    return model


def _build_vificlip(settings: StudentSettings, num_classes: int) -> vificlip.ViFiCLIP:
    """ViFi-CLIP student: random, `hub:openai` (OpenAI CLIP), or a ViFi-CLIP / open_clip / uniego file."""
    if settings.patch_size is not None:
        raise UniegoError("student.patch_size applies to TimeSformer students only", stage="student")
    init = settings.init
    hub = init[len("hub:"):] if init.startswith("hub:") else None
    if hub is not None and settings.arch == "vificlip_test":
        raise UniegoError("student.init: the tiny vificlip_test takes `random` or a file", stage="student")
    model = BUILDERS[settings.arch](img_size=settings.input_size, num_classes=num_classes, pretrained=hub)
    if init == "random" or hub is not None:
        return model
    if not Path(init).is_file():
        raise UniegoError(f"student.init: file {init} does not exist (random | hub:openai | a checkpoint file)", stage="student")
    obj = read_checkpoint(init, stage="student")
    own = model.state_dict()
    if "encoder" in obj:  # a uniego checkpoint: the whole student
        state = dict(obj["encoder"])
        if "head.weight" in state and state["head.weight"].shape != own["head.weight"].shape:
            state = {**state, "head.weight": own["head.weight"], "head.bias": own["head.bias"]}
    else:  # ViFi-CLIP / open_clip: the image encoder; the head stays as initialised
        state = {**vificlip.vificlip_state_dict(obj), "head.weight": own["head.weight"], "head.bias": own["head.bias"]}
    tsf._strict_load(model, state, init)
    return model


class ProxyModel(nn.Module):
    """encoder (TimeSformer + head) and the eq.-1 projection `proj`:
    projection 'teacher': Linear(D_teacher -> D_student) on the teacher feature, learned (paper);
    projection 'teacher_frozen': the same Linear at its seeded random init, never trained, so
        the target cannot collapse to a constant that the CLS matches trivially (docs/method.md);
    projection 'student': Linear(D_student -> D_teacher) on the student CLS (official code)."""

    def __init__(self, encoder: tsf.TimeSformer, teacher_dim: int, projection: str):
        super().__init__()
        self.encoder, self.projection = encoder, projection
        d = encoder.embed_dim
        teacher_side = projection in ("teacher", "teacher_frozen")
        self.proj = nn.Linear(teacher_dim, d) if teacher_side else nn.Linear(d, teacher_dim)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        if projection == "teacher_frozen":
            self.proj.requires_grad_(False)

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clip [B, 3, T, H, W] -> (h [B, D] CLS after the final norm, logits [B, C])."""
        h = self.encoder.forward_features(clip)
        return h, self.encoder.head(h)

    def align(self, h: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two sides of eq. 1's cosine term, in a common space."""
        return (self.proj(h), teacher) if self.projection == "student" else (h, self.proj(teacher))
