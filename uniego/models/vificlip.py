"""ViFi-CLIP-style student backbone: the CLIP ViT-B/16 image encoder (open_clip, QuickGELU,
OpenAI layer names) on every frame, the frame embeddings averaged over time; feature h = that
mean (512-d for ViT-B/16), a linear classifier `head` on it (the paper's second backbone; the
official UNIEGO code ships only TimeSformer).

Weights: `hub:openai` (OpenAI CLIP through open_clip), a ViFi-CLIP checkpoint
(`{"model": {"module.image_encoder.<OpenAI names>": ...}}`: a pure prefix rename to
`visual.`), an open_clip checkpoint (`visual.*`), or a uniego checkpoint (`encoder`).
"""

from __future__ import annotations

import torch
from torch import nn

from uniego.errors import UniegoError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_TINY_TEXT = dict(context_length=8, vocab_size=100, width=32, heads=2, layers=1)


class ViFiCLIP(nn.Module):
    """visual: an open_clip VisionTransformer; forward_features [B, 3, T, H, W] -> [B, D]."""

    def __init__(self, visual: nn.Module, embed_dim: int, num_classes: int = 0):
        super().__init__()
        self.visual, self.embed_dim, self.num_classes = visual, embed_dim, num_classes
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        B, _, T = x.shape[:3]
        frames = x.transpose(1, 2).flatten(0, 1)  # [B*T, 3, H, W]
        return self.visual(frames).reshape(B, T, -1).mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _build(pretrained: str | None, img_size: int, num_classes: int, *, tiny: bool) -> ViFiCLIP:
    import open_clip

    if tiny:
        clip = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True, embed_dim=32,
                                      vision_cfg=dict(image_size=img_size, patch_size=16, width=64, layers=2, head_width=32),
                                      text_cfg=_TINY_TEXT)
    else:
        clip = open_clip.create_model("ViT-B-16", pretrained=pretrained, force_quick_gelu=True, force_image_size=img_size)
    return ViFiCLIP(clip.visual, clip.visual.output_dim, num_classes)


def vificlip_b16(img_size: int = 224, num_frames: int = 8, num_classes: int = 0, pretrained: str | None = None,
                 **_) -> ViFiCLIP:
    """CLIP ViT-B/16 (QuickGELU) frame encoder, mean over frames, 512-d. num_frames is free."""
    return _build(pretrained, img_size, num_classes, tiny=False)


def vificlip_test(img_size: int = 32, num_frames: int = 4, num_classes: int = 0, **_) -> ViFiCLIP:
    """Tiny ViFi-CLIP for tests and the demo: width 64, 2 layers, 32-d output (same code path)."""
    return _build(None, img_size, num_classes, tiny=True)


def vificlip_state_dict(obj: dict) -> dict:
    """The image-encoder weights of a ViFi-CLIP checkpoint (`module.image_encoder.*`, also
    without `module.`) or an open_clip checkpoint (`visual.*`), under the `visual.` prefix."""
    state = obj.get("model", obj.get("state_dict", obj))
    out = {}
    for k, v in state.items():
        for prefix in ("module.image_encoder.", "image_encoder.", "visual."):
            if k.startswith(prefix):
                out["visual." + k[len(prefix):]] = v
                break
    if not out:
        raise UniegoError("no image-encoder weights (module.image_encoder.* or visual.*) in the checkpoint", stage="student")
    return out
