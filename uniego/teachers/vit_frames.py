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
from uniego.teachers.base import Teacher, strict_load


def dinov2_resize_pos_embed(pos: torch.Tensor, grid: int | tuple[int, int]) -> torch.Tensor:
    """[1, 1+G*G, D] -> [1, 1+h*w, D] for grid (h, w) (or grid x grid), as DINOv2's
    interpolate_pos_encoding: bicubic with scale factors ((h + 0.1) / G, (w + 0.1) / G), no antialias."""
    h, w = (grid, grid) if isinstance(grid, int) else grid
    n = pos.shape[1] - 1
    G = int(round(n ** 0.5))
    if G * G != n:
        raise UniegoError(f"pos_embed with {n} patch positions is not a square grid")
    if (G, G) == (h, w):
        return pos
    patch = pos[:, 1:].reshape(1, G, G, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, scale_factor=((h + 0.1) / G, (w + 0.1) / G), mode="bicubic", antialias=False)
    if patch.shape[-2:] != (h, w):
        raise UniegoError(f"pos_embed resize from {G}x{G} gave {tuple(patch.shape[-2:])}, expected {h}x{w}")
    return torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, h * w, -1).to(pos.dtype)], dim=1)


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
            source_pos = state["pos_embed"]
            state["pos_embed"] = dinov2_resize_pos_embed(source_pos, self.input_size // 14)
            self.model = timm.create_model(payload, pretrained=False, num_classes=0, img_size=self.input_size, **kwargs)
            strict_load(self.model, state, settings.weights)
        else:
            self.model = timm.create_model(timm_name, pretrained=False, num_classes=0, img_size=self.input_size, **kwargs)
            source_pos = self.model.pos_embed.detach().clone()   # random weights: their own
            if kind == "file":
                state = convert_dinov2_checkpoint(payload, grid=self.input_size // 14, family=spec.family,
                                                  source=settings.weights)
                strict_load(self.model, state, settings.weights)   # so the checkpoint has a pos_embed
                source_pos = payload["pretrained.pos_embed" if spec.family == "depth_anything" else "pos_embed"]
        # the position embedding as the weights have it, resized per input grid by `tokens`
        self.register_buffer("source_pos_embed", source_pos.detach().float().clone(), persistent=False)
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}

    def preprocess(self, sample: dict) -> dict:
        return {"frames": self.transform(sample[self.spec.view])}

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> final-norm tokens [N, 1 + h*w, D]. A non-square input (Depth Anything
        keeps the frame's aspect) gets the source position embedding resized to its grid the
        DINOv2 way, as the original's `interpolate_pos_encoding` does per input."""
        m = self.model
        grid = (x.shape[-2] // 14, x.shape[-1] // 14)
        if grid == tuple(m.patch_embed.grid_size):
            return m.forward_features(x)
        if grid not in self._pos_cache:
            self._pos_cache[grid] = dinov2_resize_pos_embed(self.source_pos_embed, grid)
        t = m.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([m.cls_token.expand(len(t), -1, -1), t], dim=1) + self._pos_cache[grid].to(t.dtype)
        return m.norm(m.blocks(m.norm_pre(t)))

    def forward(self, batch: dict) -> torch.Tensor:
        x = batch["frames"]  # [B, T, 3, H, W]
        B, T = x.shape[:2]
        tokens = self.tokens(x.flatten(0, 1))  # final norm applied
        if self.pooling == "cls":
            feat = tokens[:, 0]
        else:
            feat = tokens[:, self.model.num_prefix_tokens:].mean(dim=1)
        return feat.reshape(B, T, -1)
