"""open_clip image-encoder teachers, frame-wise: SigLIP (ego_siglip, exo_siglip; MAP-pooled
`encode_image`, mean/std 0.5, squash resize) and the Sk-Ego STAND-IN (exo_skego).

Sk-Ego (Reilly et al. 2025) has no released code or weights. Our stand-in, labelled as such in
the store's attributes and the report: crop each exo clip to the box around its confident
skeleton joints (the "skeleton-guided" part), then an open_clip ViT-B/16 image encoder per
frame (512-d). Configure precomputed features instead if you have the real ones.
"""

from __future__ import annotations

import numpy as np
import torch

from uniego.errors import UniegoError
from uniego.teachers.base import Teacher
from uniego.teachers.transforms import frames_to_tensor

_TINY_TEXT = dict(context_length=16, vocab_size=100, width=32, heads=2, layers=1)


def _register_tiny_siglip_trunk(img_size: int) -> str:
    import timm
    from timm.models import register_model
    from timm.models._registry import _model_entrypoints

    name = f"uniego_siglip_test_{img_size}"
    if name not in _model_entrypoints:
        def build(pretrained=False, **kwargs):
            for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
                kwargs.pop(k, None)
            return timm.create_model("vit_so400m_patch14_siglip_224", pretrained=False, **{
                "img_size": img_size, "embed_dim": 64, "depth": 2, "num_heads": 2, "mlp_ratio": 4.0, **kwargs})
        build.__name__ = name
        register_model(build)
    return name


def create_open_clip(arch, settings, input_size: int):
    """The open_clip model for `arch` with the configured weights (file, `hub:<tag>` or random)."""
    import open_clip

    w = settings.weights
    pretrained = None if w == "random" else (w[len("hub:"):] if w.startswith("hub:") else w)
    if arch.kwargs.get("tiny"):
        if pretrained is not None and not str(pretrained).endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise UniegoError(f"teachers.{settings.key}.weights: tiny test architectures take `random` or a local file")
        if arch.family == "siglip":
            return open_clip.create_model(
                arch.kwargs["model_name"], pretrained=pretrained, embed_dim=64, init_logit_bias=-10,
                vision_cfg=dict(image_size=input_size, timm_model_name=_register_tiny_siglip_trunk(input_size),
                                timm_model_pretrained=False, timm_pool="map", timm_proj="none"),
                text_cfg=dict(_TINY_TEXT, width=64, no_causal_mask=True, proj_bias=True, pool_type="last"))
        return open_clip.create_model(arch.kwargs["model_name"], pretrained=pretrained, force_quick_gelu=True, embed_dim=32,
                                      vision_cfg=dict(image_size=input_size, patch_size=16, width=64, layers=2, head_width=32),
                                      text_cfg=_TINY_TEXT)
    if arch.family == "skego":
        return open_clip.create_model(arch.kwargs["model_name"], pretrained=pretrained, force_quick_gelu=True,
                                      force_image_size=input_size)
    return open_clip.create_model(arch.kwargs["model_name"], pretrained=pretrained, force_image_size=input_size)


class SigLIPTeacher(Teacher):
    def __init__(self, spec, arch, settings):
        super().__init__(spec, arch, settings)
        self.weights_kind()  # open_clip loads the file itself (strict, weights_only)
        self.visual = create_open_clip(arch, settings, self.input_size).visual  # text tower dropped

    def preprocess(self, sample: dict) -> dict:
        return {"frames": self.transform(sample[self.spec.view])}

    def forward(self, batch: dict) -> torch.Tensor:
        x = batch["frames"]
        B, T = x.shape[:2]
        return self.visual(x.flatten(0, 1)).reshape(B, T, -1)


def skeleton_box(skeleton: np.ndarray, img_hw, frame_hw: int | tuple[int, int], *, min_score: float = 0.3,
                 margin: float = 0.15) -> tuple[int, int, int, int]:
    """Square box (top, left, bottom, right) in the cached exo frame around the clip's confident
    joints, with a margin. The video (img_hw) was resized to cover frame_hw (h, w; an int: the
    square the demo caches) and centre-cropped, as the clip cache does (uniego.video.resize_crop);
    the box is clipped to the frame."""
    h, w = img_hw
    fh, fw = (frame_hw, frame_hw) if isinstance(frame_hw, (int, np.integer)) else frame_hw
    pts = skeleton[..., :2][skeleton[..., 2] >= min_score]
    if len(pts) == 0:
        raise UniegoError("no skeleton joint reaches the confidence threshold; cannot place the Sk-Ego crop")
    scale = max(fh / h, fw / w)
    off = np.array([(w * scale - fw) / 2, (h * scale - fh) / 2])
    pts = pts * scale - off
    lo, hi = pts.min(0), pts.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + margin) + 2
    t, l = int(np.floor(centre[1] - half)), int(np.floor(centre[0] - half))
    b, r = int(np.ceil(centre[1] + half)), int(np.ceil(centre[0] + half))
    t, l = max(t, 0), max(l, 0)
    return t, l, min(max(b, t + 2), fh), min(max(r, l + 2), fw)


class SkEgoStandIn(SigLIPTeacher):
    def preprocess(self, sample: dict) -> dict:
        frames = sample["exo"]   # the box is placed in the whole cached frame
        t, l, b, r = skeleton_box(sample["skeleton"], sample["skeleton_img_hw"], frames.shape[1:3])
        box = frames[:, t:b, l:r]
        if self.arch.transform == "square":   # the stand-in's own: the whole box, resized
            return {"frames": frames_to_tensor(box, self.input_size, self.arch.mean, self.arch.std)}
        return {"frames": self.transform(box)}   # open_clip's: short side, centre crop
