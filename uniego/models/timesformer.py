"""TimeSformer with divided space-time attention (Bertasius et al., ICML 2021), on timm layers.

Mirrors facebookresearch/TimeSformer `timesformer/models/vit.py` (commit a5ef29a) so that the
official `.pyth` checkpoints load strictly: same parameter names and shapes (249 tensors for
the base model with a head), same wiring:

* tokens ordered (h, w, t) with t fastest; one CLS per clip, no time embedding on the CLS;
* temporal branch per spatial position: x + temporal_fc(drop_path(temporal_attn(temporal_norm1(x))));
* spatial branch per frame with a copy of the CLS; the CLS update is the mean over frames;
* pre-norm MLP on all tokens; the feature h is the CLS after the final norm.
No code is copied from the official repository (CC BY-NC); this is written from its description.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Attention
from torch import nn

from uniego.errors import UniegoError


class DividedSpaceTimeBlock(nn.Module):
    """One TimeSformer block: temporal attention, then spatial attention, then MLP."""

    def __init__(self, *, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_layer=partial(nn.LayerNorm, eps=1e-6)):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.temporal_norm1 = norm_layer(dim)
        self.temporal_attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.temporal_fc = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: [B, 1 + N*T, D], patch tokens in (n, t) order with t fastest."""
        B, L, D = x.shape
        T = num_frames
        N = (L - 1) // T
        cls, tokens = x[:, :1], x[:, 1:]
        # temporal attention: each spatial position attends over its T tokens (CLS excluded)
        xt = tokens.reshape(B * N, T, D)
        xt = self.temporal_fc(self.drop_path(self.temporal_attn(self.temporal_norm1(xt))))
        tokens = tokens + xt.reshape(B, N * T, D)
        # spatial attention: each frame's N tokens plus a copy of the CLS
        xs = tokens.reshape(B, N, T, D).transpose(1, 2).reshape(B * T, N, D)
        xs = torch.cat([cls.expand(B, T, D).reshape(B * T, 1, D), xs], dim=1)
        rs = self.drop_path(self.attn(self.norm1(xs)))
        cls = cls + rs[:, 0].reshape(B, T, D).mean(dim=1, keepdim=True)
        tokens = tokens + rs[:, 1:].reshape(B, T, N, D).transpose(1, 2).reshape(B, N * T, D)
        x = torch.cat([cls, tokens], dim=1)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TimeSformer(nn.Module):
    """Video transformer with divided space-time attention.

    Args (keyword-only, timm names): img_size, patch_size, in_chans, embed_dim, depth,
    num_heads, mlp_ratio, qkv_bias, num_frames, num_classes (0: no head, forward returns the
    feature), drop_rate, drop_path_rate (linearly increasing over blocks, official 0.1).
    Input: x [B, 3, T, H, W]. Other T or H, W than configured are handled the official way
    (nearest resize of time_embed and of the pos_embed grid).
    """

    def __init__(self, *, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, num_frames: int = 8, num_classes: int = 0,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.embed_dim = self.num_features = embed_dim
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim, strict_img_size=False)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.time_drop = nn.Dropout(drop_rate)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear over blocks
        self.blocks = nn.ModuleList(
            DividedSpaceTimeBlock(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                  qkv_bias=qkv_bias, drop_path=dpr[i]) for i in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # As the official init does in effect: the temporal branch starts at exactly zero
        # in every block, and time_embed starts at zero.
        for blk in self.blocks:
            nn.init.zeros_(blk.temporal_fc.weight)
            nn.init.zeros_(blk.temporal_fc.bias)
        nn.init.zeros_(self.time_embed)

    def _pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        pos = self.pos_embed
        if grid[0] * grid[1] == pos.shape[1] - 1:
            return pos
        g = self.patch_embed.grid_size
        patch_pos = pos[:, 1:].reshape(1, g[0], g[1], -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="nearest").flatten(2).transpose(1, 2)
        return torch.cat([pos[:, :1], patch_pos], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, T, H, W] -> CLS after the final norm [B, embed_dim]."""
        B, C, T, H, W = x.shape
        x = self.patch_embed(x.transpose(1, 2).reshape(B * T, C, H, W))  # [B*T, N, D]
        grid = (H // self.patch_embed.patch_size[0], W // self.patch_embed.patch_size[1])
        N, D = x.shape[1], x.shape[2]
        x = torch.cat([self.cls_token.expand(B * T, 1, D), x], dim=1) + self._pos_embed_for(grid)
        x = self.pos_drop(x)
        cls = x[:B, :1]  # every frame's CLS is identical (same token, same pos_embed[0])
        tokens = x[:, 1:].reshape(B, T, N, D).transpose(1, 2)  # [B, N, T, D]
        time_embed = self.time_embed
        if T != time_embed.shape[1]:
            time_embed = F.interpolate(time_embed.transpose(1, 2), size=T, mode="nearest").transpose(1, 2)
        tokens = self.time_drop(tokens + time_embed.unsqueeze(1))
        x = torch.cat([cls, tokens.reshape(B, N * T, D)], dim=1)
        for blk in self.blocks:
            x = blk(x, T)
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, T, H, W] -> logits [B, num_classes], or the feature when num_classes = 0."""
        return self.head(self.forward_features(x))


def timesformer_base(**kwargs) -> TimeSformer:
    """TimeSformer-B divided space-time, 8x224 (the official base config)."""
    return TimeSformer(**{"img_size": 224, "patch_size": 16, "embed_dim": 768, "depth": 12,
                          "num_heads": 12, "num_frames": 8, **kwargs})


def timesformer_test(**kwargs) -> TimeSformer:
    """Tiny TimeSformer for tests and the demo (same code path, dim 64, depth 2, 2 heads)."""
    return TimeSformer(**{"img_size": 32, "patch_size": 16, "embed_dim": 64, "depth": 2,
                          "num_heads": 2, "num_frames": 4, **kwargs})


def _strict_load(model: nn.Module, state: dict, path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        def few(keys):
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
        parts = [f"missing keys: {few(missing)}" if missing else "",
                 f"unexpected keys: {few(unexpected)}" if unexpected else "",
                 "shape mismatch: " + few([f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong]) if wrong else ""]
        raise UniegoError(f"checkpoint {path} does not fit the model ({type(model).__name__}): "
                          + "; ".join(p for p in parts if p)
                          + ". Check that the config's arch matches the checkpoint.", stage="load")
    model.load_state_dict(state, strict=True)


def official_state_dict(obj: dict) -> dict:
    """The TimeSformer weights inside an official checkpoint object (`model_state` with the
    `model.` wrapper prefix, a DDP `state_dict` with `module.`, or a plain state dict)."""
    if "model_state" in obj:
        state, prefix = obj["model_state"], "model."
    elif "state_dict" in obj:
        state, prefix = obj["state_dict"], "module."
    else:
        state, prefix = obj, None
    if prefix is None:
        return dict(state)
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def load_official_checkpoint(model: TimeSformer, path: str | Path) -> TimeSformer:
    """Load an official TimeSformer `.pyth` (`{"model_state": {"model.<key>": ...}}`) strictly.

    The classifier `head.*` is dropped only when the model has no head (num_classes = 0, a
    feature extractor); every other missing, unexpected or misshaped key is an error naming it.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise UniegoError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict", stage="load")
    state = official_state_dict(obj)
    if model.num_classes == 0:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    _strict_load(model, state, path)
    return model


def inflate_vit_state_dict(model: TimeSformer, vit_state: dict) -> dict:
    """ImageNet ViT (timm `vit_base_patch16_224` names) -> TimeSformer state dict, the
    TimeSformer way: temporal_attn / temporal_norm1 copied from the spatial ones, temporal_fc
    and time_embed zero, pos_embed resized by 1-D nearest interpolation over the flattened
    patch sequence if the patch count differs, head dropped when the class count differs."""
    own = model.state_dict()
    state = {k: v for k, v in vit_state.items() if k in own or k.startswith("head.")}
    w = state.get("patch_embed.proj.weight")
    if w is not None and w.ndim == 2:  # linear patch embedding -> conv filter
        state["patch_embed.proj.weight"] = w.reshape(own["patch_embed.proj.weight"].shape)
    if any(k.startswith("head.") for k in state) and (
            "head.weight" not in own or own["head.weight"].shape != state["head.weight"].shape):
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    pos = state.get("pos_embed")
    if pos is not None and pos.shape != own["pos_embed"].shape:
        patch = F.interpolate(pos[:, 1:].transpose(1, 2), size=own["pos_embed"].shape[1] - 1, mode="nearest")
        state["pos_embed"] = torch.cat([pos[:, :1], patch.transpose(1, 2)], dim=1)
    for k in list(state):
        if k.startswith("blocks.") and ".attn." in k:
            state[k.replace(".attn.", ".temporal_attn.")] = state[k].clone()
        if k.startswith("blocks.") and ".norm1." in k:
            state[k.replace(".norm1.", ".temporal_norm1.")] = state[k].clone()
    for k, v in own.items():
        if ".temporal_fc." in k or k == "time_embed":
            state[k] = torch.zeros_like(v)
    if "head.weight" in own and "head.weight" not in state:  # fresh classifier, official init
        state["head.weight"] = trunc_normal_(torch.empty_like(own["head.weight"]), std=0.02)
        state["head.bias"] = torch.zeros_like(own["head.bias"])
    return state


def load_imagenet_vit(model: TimeSformer, vit_state: dict, *, source: str = "ImageNet ViT") -> TimeSformer:
    """Initialise from 2-D ViT weights (see `inflate_vit_state_dict`), strictly."""
    _strict_load(model, inflate_vit_state_dict(model, vit_state), source)
    return model
