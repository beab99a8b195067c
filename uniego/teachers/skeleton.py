"""exo_skl: ST-GCN on the exo 2-D skeleton (COCO-17, x, y, score); feature = the pooled
backbone output (the GCNHead input), 256-d for the pyskl config.

Coordinates are normalised as pyskl's PreNormalize2D: (x - w/2) / (w/2), (y - h/2) / (h/2)
with the exo video's frame size; one person (M = 1). Weights: a pyskl checkpoint
(`state_dict` with `backbone.*`), a uniego task-teacher checkpoint, or random.
"""

from __future__ import annotations

import numpy as np
import torch

from uniego.errors import UniegoError
from uniego.models import stgcn
from uniego.teachers.base import Teacher, strict_load


class STGCNTeacher(Teacher):
    def __init__(self, spec, arch, settings):
        super().__init__(spec, arch, settings)
        builder = {"stgcn_coco": stgcn.stgcn_coco, "stgcn_test": stgcn.stgcn_test}[arch.kwargs["builder"]]
        self.model = builder(num_classes=0)
        kind, payload = self.resolve_weights()
        if kind == "hub":
            raise UniegoError(f"teachers.{spec.key}.weights: ST-GCN weights come from a local pyskl checkpoint, not a hub")
        if kind == "file":
            state = {k: v for k, v in stgcn.pyskl_state_dict(payload).items() if not k.startswith("cls_head.")}
            strict_load(self.model, state, settings.weights)

    def preprocess(self, sample: dict) -> dict:
        sk = np.asarray(sample["skeleton"], dtype=np.float32).copy()  # [T, V, 3] pixels + score
        h, w = sample["skeleton_img_hw"]
        sk[..., 0] = (sk[..., 0] - w / 2) / (w / 2)
        sk[..., 1] = (sk[..., 1] - h / 2) / (h / 2)
        return {"skeleton": torch.from_numpy(sk)[None]}  # [M=1, T, V, C]

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model.forward_features(batch["skeleton"])
