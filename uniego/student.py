"""The student: a TimeSformer whose feature h is the CLS after the final norm, with a
classifier head (`head`, official key names) and, for a proxy, the eq.-1 projection."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from uniego.config import StudentSettings
from uniego.errors import UniegoError
from uniego.models import timesformer as tsf
from uniego.teachers.registry import KINETICS_MEAN, KINETICS_STD

BUILDERS = {"timesformer_base": tsf.timesformer_base, "timesformer_test": tsf.timesformer_test}
MEAN, STD = KINETICS_MEAN, KINETICS_STD  # the official loaders' normalisation


def build_student(settings: StudentSettings, num_classes: int, *, num_frames: int, seed: int = 0) -> tsf.TimeSformer:
    """A TimeSformer with a `num_classes` head, initialised as `settings.init` says:
    random (seeded), `hub:<timm ViT>` (ImageNet ViT inflated the TimeSformer way), or a file
    (official `.pyth`, or a uniego checkpoint with an `encoder` entry; the head is kept only if
    its class count matches)."""
    if settings.arch not in BUILDERS:
        raise UniegoError(f"student.arch {settings.arch!r} unknown; choose from {', '.join(BUILDERS)}", stage="student")
    torch.manual_seed(seed)
    extra = {} if settings.patch_size is None else {"patch_size": settings.patch_size}
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
    obj = torch.load(init, map_location="cpu", weights_only=True)
    state = obj["encoder"] if "encoder" in obj else tsf.official_state_dict(obj)
    own = model.state_dict()
    if state.get("head.weight") is not None and state["head.weight"].shape != own["head.weight"].shape:
        state = {**state, "head.weight": own["head.weight"], "head.bias": own["head.bias"]}
    tsf._strict_load(model, state, init)
    return model


class ProxyModel(nn.Module):
    """encoder (TimeSformer + head) and the eq.-1 projection `proj`:
    projection 'teacher': Linear(D_teacher -> D_student) on the teacher feature (paper);
    projection 'student': Linear(D_student -> D_teacher) on the student CLS (official code)."""

    def __init__(self, encoder: tsf.TimeSformer, teacher_dim: int, projection: str):
        super().__init__()
        self.encoder, self.projection = encoder, projection
        d = encoder.embed_dim
        self.proj = nn.Linear(teacher_dim, d) if projection == "teacher" else nn.Linear(d, teacher_dim)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clip [B, 3, T, H, W] -> (h [B, D] CLS after the final norm, logits [B, C])."""
        h = self.encoder.forward_features(clip)
        return h, self.encoder.head(h)

    def align(self, h: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two sides of eq. 1's cosine term, in a common space."""
        return (h, self.proj(teacher)) if self.projection == "teacher" else (self.proj(h), teacher)
