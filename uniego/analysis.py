"""Analyses of what the teachers and proxies learned (paper Figures 3-6, Tables 9, 11, 12).

Linear CKA (Kornblith et al. 2019) compares two representations of the same samples; it is
1 for identical ones, unchanged by rotations and isotropic scaling of either, and near 0 for
unrelated ones.
"""

from __future__ import annotations

import numpy as np
import torch


def linear_cka(x, y) -> float:
    """Linear CKA of x [N, D1] and y [N, D2] (rows: the same N samples), feature-space form:
    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with columns centred, in float64."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"linear_cka needs x [N, D1] and y [N, D2] with the same N >= 2, got {tuple(x.shape)}, {tuple(y.shape)}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("linear_cka: the features contain NaN or Inf")
    x, y = x - x.mean(0), y - y.mean(0)
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if denom == 0:
        raise ValueError("linear_cka: one representation is constant over the samples")
    return float(torch.linalg.matrix_norm(y.T @ x) ** 2 / denom)


def cka_matrix(features: dict[str, np.ndarray]) -> np.ndarray:
    """Pairwise linear CKA of named representations of the same samples -> [R, R] (symmetric,
    ones on the diagonal)."""
    names = list(features)
    out = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            out[i, j] = out[j, i] = linear_cka(features[names[i]], features[names[j]])
    return out
