"""Level-I proxy objective (eq. 1) and the distances it and SPD share."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos(a, b) per row: [..., D] x [..., D] -> [...]."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


def kl_to_student(z_teacher: torch.Tensor, z_student: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """KL(softmax(z_teacher / tau) || softmax(z_student / tau)) per row (the teacher is the
    target, as in the paper and the official code; no tau^2 factor). [..., C] -> [...]."""
    log_p_student = F.log_softmax(z_student / tau, dim=-1)
    p_teacher = F.softmax(z_teacher / tau, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="none").sum(-1)


def proxy_loss(h: torch.Tensor, z: torch.Tensor, h_teacher: torch.Tensor, y: torch.Tensor, *,
               lambda_feat: float, lambda_cls: float) -> dict[str, torch.Tensor]:
    """Eq. 1: L = lambda_cls * CE(z, y) + lambda_feat * (1 - cos(h, h_teacher)), batch means.

    h [B, D]: the proxy's feature in the space where it meets the teacher (after the learned
    projection of either side, see `fidelity`); h_teacher [B, D]; z [B, C] logits; y [B].
    Returns {"loss", "cls_loss", "feat_loss"} (the unweighted terms, for logging).
    """
    cls = F.cross_entropy(z, y)
    feat = cosine_distance(h, h_teacher).mean()
    return {"loss": lambda_cls * cls + lambda_feat * feat, "cls_loss": cls.detach(), "feat_loss": feat.detach()}
