"""Evaluation metrics. Tensors or numpy arrays in, Python floats (percent) out."""

from __future__ import annotations

import numpy as np
import torch


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def topk_accuracy(logits, labels, k: int = 1) -> float:
    """Percentage of samples whose label is among the k highest logits. [N, C], [N] -> float.
    Ties are broken towards the lower class index (torch.topk on CPU is stable for equal values
    only by index order after a stable sort, which we do explicitly)."""
    logits, labels = _tensor(logits).float(), _tensor(labels).long()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"topk_accuracy needs logits [N, C] and labels [N], got {tuple(logits.shape)}, {tuple(labels.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("topk_accuracy of an empty set")
    k = min(k, logits.shape[1])
    top = torch.sort(-logits, dim=1, stable=True).indices[:, :k]
    return float((top == labels[:, None]).any(1).float().mean() * 100)
