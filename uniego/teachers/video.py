"""exo_rgb: TimeSformer on the exo clip; feature = CLS after the final norm (768-d).

Weights: an official `.pyth` (`model_state`, `model.` prefix), a uniego task-teacher
checkpoint, `hub:<timm ViT name>` (ImageNet ViT inflated the TimeSformer way), or random.
"""

from __future__ import annotations

import torch

from uniego.models import timesformer as tsf
from uniego.teachers.base import Teacher
from uniego.teachers.transforms import centre_square, frames_to_tensor


class TimeSformerTeacher(Teacher):
    def __init__(self, spec, arch, settings):
        super().__init__(spec, arch, settings)
        builder = {"timesformer_base": tsf.timesformer_base, "timesformer_test": tsf.timesformer_test}[arch.kwargs["builder"]]
        extra = {} if settings.patch_size is None else {"patch_size": settings.patch_size}
        self.model = builder(img_size=self.input_size, num_classes=0, **extra)
        kind, payload = self.resolve_weights()
        if kind == "file":
            state = tsf.official_state_dict(payload)
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
            tsf._strict_load(self.model, state, settings.weights)
        elif kind == "hub":
            import timm
            vit = timm.create_model(payload, pretrained=True)
            tsf.load_imagenet_vit(self.model, vit.state_dict(), source=settings.weights)

    def preprocess(self, sample: dict) -> dict:
        x = frames_to_tensor(centre_square(sample["exo"]), self.input_size, self.arch.mean, self.arch.std)
        return {"clip": x.transpose(0, 1)}  # [3, T, S, S]

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model.forward_features(batch["clip"])
