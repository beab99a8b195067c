"""Proxy merging (eq. 2): theta = sum_r alpha_r theta_r with alpha on the simplex.

alpha is the softmax of learnable logits, learned to minimise the merged model's
cross-entropy, one alpha for the whole model (`model`), per layer group (`layer`: each block,
and each other top-level module), or per tensor (`parameter`); `average` keeps the uniform
alpha and `best` puts all weight on one proxy. The logits start at zero (uniform alpha, the
official code) or, as a second start (`start_logits`), leaning on one proxy.
The merged forward uses torch.func.functional_call on one blended state dict per step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from uniego.errors import UniegoError

STRATEGIES = ("model", "layer", "parameter", "average", "best")
STARTS = ("uniform", "best_proxy")


def start_logits(start: str, num_proxies: int, *, best: int | None = None, weight: float = 0.9) -> torch.Tensor:
    """alpha's initial logits [R]: `uniform` zeros (alpha = 1/R, the official start), or
    `best_proxy`: alpha = `weight` on proxy `best` and the rest shared equally by the others
    (a start beside the vertex with the lowest objective, from which the local search of eq. 2
    cannot end worse than that vertex unless the barrier pushes it out)."""
    if start not in STARTS:
        raise UniegoError(f"merge start {start!r} unknown; choose from {', '.join(STARTS)}", stage="merge")
    logits = torch.zeros(num_proxies)
    if start == "best_proxy" and num_proxies > 1:
        if best is None:
            raise UniegoError("merge start `best_proxy` needs the proxies' exported outputs to find the best proxy", stage="merge")
        if not 0.0 < weight < 1.0:
            raise UniegoError(f"merge.best_start_alpha must lie in (0, 1), not {weight}", stage="merge")
        logits[best] = float(np.log(weight * (num_proxies - 1) / (1.0 - weight)))
    return logits


def stack_states(states: list[dict]) -> dict:
    """R state dicts -> {key: [R, ...] floating stack, or the shared non-float tensor}."""
    keys = list(states[0])
    for r, s in enumerate(states[1:], 1):
        if list(s) != keys:
            diff = sorted(set(s) ^ set(keys))[:5]
            raise UniegoError(f"proxy {r} has other state keys than proxy 0 ({diff})", stage="merge")
    stacked = {}
    for key in keys:
        tensors = [s[key] for s in states]
        if any(t.shape != tensors[0].shape for t in tensors):
            raise UniegoError(f"cannot merge {key}: shapes {[tuple(t.shape) for t in tensors]}", stage="merge")
        if tensors[0].is_floating_point():
            stacked[key] = torch.stack(tensors)
        elif any(not torch.equal(t, tensors[0]) for t in tensors):
            raise UniegoError(f"cannot merge non-float tensor {key}: it differs between proxies", stage="merge")
        else:
            stacked[key] = tensors[0]
    return stacked


def blend(stacked: dict, alpha) -> dict:
    """sum_r alpha_r theta_r for every floating stack (alpha [R] or {key: [R]}); others copied."""
    out = {}
    for key, t in stacked.items():
        if t.is_floating_point():
            a = alpha[key] if isinstance(alpha, dict) else alpha
            out[key] = (a.to(t.dtype).reshape(-1, *[1] * (t.ndim - 1)) * t).sum(0)
        else:
            out[key] = t
    return out


def merge_states(states: list[dict], alpha) -> dict:
    """Eq. 2: theta = sum_r alpha_r theta_r. states: R state dicts with the same keys and
    shapes; alpha: a tensor [R] for every key, or a dict key -> tensor [R]. Floating tensors are
    blended (differentiably in alpha); other tensors must be equal across proxies and are copied."""
    return blend(stack_states(states), alpha)


def layer_group(key: str) -> str:
    """`blocks.3.attn.qkv.weight` -> `blocks.3`; `patch_embed.proj.weight` -> `patch_embed.proj`;
    `pos_embed` -> `pos_embed` (the official code's 18 groups for TimeSformer-B). ViFi-CLIP:
    `visual.transformer.resblocks.3.ln_1.weight` -> `visual.transformer.resblocks.3`."""
    parts = key.split(".")
    for name in ("blocks", "resblocks"):
        if name in parts[:-2]:
            i = parts.index(name)
            return ".".join(parts[:i + 2])
    return ".".join(parts[:-1]) or key


class MergeWeights(nn.Module):
    """The learnable alpha of one strategy, over the keys being merged."""

    def __init__(self, keys: list[str], num_proxies: int, strategy: str, *, best: int | None = None,
                 init: torch.Tensor | None = None):
        super().__init__()
        if strategy not in STRATEGIES:
            raise UniegoError(f"merge strategy {strategy!r} unknown; choose from {', '.join(STRATEGIES)}", stage="merge")
        self.keys, self.R, self.strategy = list(keys), num_proxies, strategy
        if strategy == "layer":
            self.groups = sorted({layer_group(k) for k in keys})
        elif strategy == "parameter":
            self.groups = list(keys)
        else:
            self.groups = ["model"]
        self.group_of = {k: (layer_group(k) if strategy == "layer" else k if strategy == "parameter" else "model") for k in keys}
        learnable = strategy in ("model", "layer", "parameter")
        start = torch.zeros(len(self.groups), num_proxies) if init is None else init.reshape(1, -1).repeat(len(self.groups), 1)
        self.logits = nn.Parameter(start.float(), requires_grad=learnable)
        if strategy == "best":
            if best is None:
                raise UniegoError("merge strategy `best` needs the index of the best proxy", stage="merge")
            with torch.no_grad():
                self.logits.fill_(float("-inf"))
                self.logits[:, best] = 0.0

    def alpha(self) -> torch.Tensor:
        """[G, R], each row on the simplex."""
        return torch.softmax(self.logits, dim=-1)

    def per_key(self) -> dict[str, torch.Tensor]:
        a = self.alpha()
        index = {g: i for i, g in enumerate(self.groups)}
        return {k: a[index[self.group_of[k]]] for k in self.keys}

    def to_json(self) -> dict:
        a = self.alpha().detach().cpu()
        return {"strategy": self.strategy, "groups": self.groups, "alpha": a.tolist()}
