"""exo_skl: ST-GCN on the exo 2-D skeleton (COCO-17, x, y, score); feature = the pooled
backbone output (the GCNHead input), 256-d for the pyskl config.

Inputs as pyskl's test pipeline makes them (kennymckormick/pyskl 3f6795f,
pyskl/datasets/pipelines/pose_related.py): PreNormalize2D maps x, y to (x - w/2) / (w/2),
(y - h/2) / (h/2) with the exo video's frame size and zeroes both where the joint's score is
<= 0.01 (the score itself kept as the third channel); FormatGCNInput(num_person=2) pads the one
tracked person with an all-zero second person, which the backbone runs and the pooling averages
in, as pyskl's GCNHead does. Frame sampling: with `clips.skeleton_sampling: pyskl` the skeleton
cache holds what pyskl's test UniformSample takes (`clips.skeleton_clips` clips of
`clips.skeleton_frames` frames, seed 255: `uniego.video.pyskl_test_indices`); each clip is a
batch item, as pyskl's RecognizerGCN folds clips into the batch, and the feature is the mean over
clips, as its feature extraction pools over `n`. The demo keeps one clip of frames spread
uniformly over the segment (`skeleton_sampling: uniform`). Weights: a pyskl checkpoint (`state_dict` with `backbone.*`), a uniego
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


def skeleton_clips(group, path) -> int:
    """How many clips a skeleton cache holds per sample, one after the other (its settings)."""
    n = (group.attrs.get("settings") or {}).get("skeleton_clips")
    if not isinstance(n, int) or n < 1:
        raise UniegoError(f"skeleton cache {path} does not record `skeleton_clips` in its settings: it was built by an older "
                          "uniego; delete it and rerun the rule that builds it", stage="extract")
    return n


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
        """[nc * T, V, 3] keypoints -> [nc, M=2, T, V, 3], as pyskl's FormatGCNInput splits the clips."""
        nc = int(sample["skeleton_clips"])
        x = pyskl_gcn_input(sample["skeleton"], sample["skeleton_img_hw"])
        M, total, V, C = x.shape
        if total % nc:
            raise UniegoError(f"{total} skeleton frames are not {nc} clips of equal length", stage="extract")
        x = x.reshape(M, nc, total // nc, V, C).transpose(1, 0, 2, 3, 4)
        return {"skeleton": torch.from_numpy(np.ascontiguousarray(x))}

    def forward(self, batch: dict) -> torch.Tensor:
        """The pooled feature of every clip, then their mean: [B, nc, M, T, V, C] -> [B, D]."""
        x = batch["skeleton"]
        B, nc = x.shape[:2]
        return self.model.forward_features(x.flatten(0, 1)).view(B, nc, -1).mean(1)
