"""Frame-wise ViT teachers on timm: DINOv2 (ego_dino, exo_dino) and the Depth Anything
encoder (ego_depth, exo_depth). Feature per frame: CLS after the final norm (`cls`) or the
mean of the final-norm patch tokens (`patch_mean`, default for depth: the DPT head reads only
patch tokens).

Checkpoints: original DINOv2 (`mask_token` present; dinov2 hub backbones), timm DINOv2, and
Depth Anything V1/V2 (`pretrained.*` encoder + `depth_head.*`). The positional embedding is
resized the DINOv2 way (bicubic with the +0.1 offset, no antialias), which reproduces the
original model exactly at other input sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from uniego.errors import UniegoError
from uniego.teachers.base import Teacher, centre_square, frames_to_tensor, strict_load


def dinov2_resize_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, 1+G*G, D] -> [1, 1+grid*grid, D], as DINOv2's interpolate_pos_encoding (offset 0.1)."""
    n = pos.shape[1] - 1
    G = int(round(n ** 0.5))
    if G * G != n:
        raise UniegoError(f"pos_embed with {n} patch positions is not a square grid")
    if G == grid:
        return pos
    patch = pos[:, 1:].reshape(1, G, G, -1).permute(0, 3, 1, 2).float()
    scale = (grid + 0.1) / G
    patch = F.interpolate(patch, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    if patch.shape[-2:] != (grid, grid):
        raise UniegoError(f"pos_embed resize from {G}x{G} gave {tuple(patch.shape[-2:])}, expected {grid}x{grid}")
    return torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)], dim=1)


def convert_dinov2_checkpoint(state: dict, *, grid: int, family: str, source) -> dict:
    """Original-format DINOv2 / Depth Anything state dict -> timm DINOv2 names at `grid`x`grid`."""
    if family == "depth_anything":
        enc = {k[len("pretrained."):]: v for k, v in state.items() if k.startswith("pretrained.")}
        if not enc:
            raise UniegoError(f"{source}: no `pretrained.*` keys; not a Depth Anything checkpoint "
                              "(expected depth_anything_v2_vitl.pth or depth_anything_vitl14.pth)")
        state = enc
    state = {k: v for k, v in state.items() if k != "mask_token"}
    if any(k.startswith("blocks.0.0.") for k in state) or "register_tokens" in state:
        raise UniegoError(f"{source}: chunked-block or register-token DINOv2 checkpoints are not supported; "
                          "use the released flat backbone weights")
    if "pos_embed" in state:
        state["pos_embed"] = dinov2_resize_pos_embed(state["pos_embed"], grid)
    return state


class FrameViTTeacher(Teacher):
    def __init__(self, spec, arch, settings):
        super().__init__(spec, arch, settings)
        import timm

        if self.input_size % 14:
            raise UniegoError(f"teachers.{spec.key}.input_size: {self.input_size} is not a multiple of the patch size 14")
        kwargs = {k: v for k, v in arch.kwargs.items() if k != "timm_name"}
        timm_name = arch.kwargs["timm_name"]
        kind, payload = self.resolve_weights()
        if kind == "hub":
            if spec.family == "depth_anything":
                raise UniegoError(f"teachers.{spec.key}.weights: Depth Anything weights come from a local "
                                  "checkpoint file (depth_anything_v2_vitl.pth), not a hub name")
            # the hub weights at their own size, then the positional embedding resized the DINOv2 way (as
            # for a checkpoint file) rather than timm's: the CLS feature then equals the original model's
            native = timm.create_model(payload, pretrained=True, num_classes=0, **kwargs)
            state = native.state_dict()
            state["pos_embed"] = dinov2_resize_pos_embed(state["pos_embed"], self.input_size // 14)
            self.model = timm.create_model(payload, pretrained=False, num_classes=0, img_size=self.input_size, **kwargs)
            strict_load(self.model, state, settings.weights)
        else:
            self.model = timm.create_model(timm_name, pretrained=False, num_classes=0, img_size=self.input_size, **kwargs)
            if kind == "file":
                state = convert_dinov2_checkpoint(payload, grid=self.input_size // 14, family=spec.family,
                                                  source=settings.weights)
                strict_load(self.model, state, settings.weights)

    def preprocess(self, sample: dict) -> dict:
        return {"frames": frames_to_tensor(centre_square(sample[self.spec.view]), self.input_size, self.arch.mean, self.arch.std)}

    def forward(self, batch: dict) -> torch.Tensor:
        x = batch["frames"]  # [B, T, 3, S, S]
        B, T = x.shape[:2]
        tokens = self.model.forward_features(x.flatten(0, 1))  # final norm applied
        if self.pooling == "cls":
            feat = tokens[:, 0]
        else:
            feat = tokens[:, self.model.num_prefix_tokens:].mean(dim=1)
        return feat.reshape(B, T, -1)
