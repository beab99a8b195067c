"""exo_skl: ST-GCN on the exo 2-D skeleton (COCO-17, x, y, score); feature = the pooled
backbone output (the GCNHead input), 256-d for the pyskl config.

Inputs as pyskl's test pipeline makes them (kennymckormick/pyskl 3f6795f,
pyskl/datasets/pipelines/pose_related.py): PreNormalize2D maps x, y to (x - w/2) / (w/2),
(y - h/2) / (h/2) with the exo video's frame size and zeroes both where the joint's score is
<= 0.01 (the score itself kept as the third channel); FormatGCNInput(num_person=2) pads the one
tracked person with an all-zero second person, which the backbone runs and the pooling averages
in, as pyskl's GCNHead does. Not as pyskl: its frame sampling (UniformSample, 10 clips of 100
frames, seed 255); the clip cache's `clips.skeleton_frames` frames spread over the clip are
one clip here. Weights: a pyskl checkpoint (`state_dict` with `backbone.*`), a uniego
task-teacher checkpoint, or random.
"""

from __future__ import annotations

import numpy as np
import torch

from uniego.errors import UniegoError
from uniego.models import stgcn
from uniego.teachers.base import Teacher, strict_load

SCORE_THRESHOLD = 0.01   # PreNormalize2D(threshold=0.01): x, y of a joint scored <= this become 0
NUM_PERSON = 2           # FormatGCNInput(num_person=2): missing persons are zeros


def pyskl_gcn_input(keypoints, img_hw) -> np.ndarray:
    """One person's [T, V, 3] (x, y in exo-video pixels, score) -> [M=2, T, V, 3] float32 as
    pyskl's PreNormalize2D then FormatGCNInput(num_person=2) make it."""
    sk = np.asarray(keypoints, dtype=np.float32).copy()
    h, w = (np.float32(v) for v in img_hw)
    sk[..., 0] = (sk[..., 0] - w / 2) / (w / 2)
    sk[..., 1] = (sk[..., 1] - h / 2) / (h / 2)
    sk[sk[..., 2] <= SCORE_THRESHOLD, :2] = 0
    return np.concatenate([sk[None], np.zeros((NUM_PERSON - 1, *sk.shape), np.float32)])


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
        return {"skeleton": torch.from_numpy(pyskl_gcn_input(sample["skeleton"], sample["skeleton_img_hw"]))}

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model.forward_features(batch["skeleton"])
