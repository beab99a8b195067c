"""Selective Proxy Distillation (eq. 4-6): per sample, distil only from the proxies that
classify it correctly, the k with the lowest cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from uniego.losses import cosine_distance, kl_to_student

MODES = ("topk", "all", "ego_exo")


def proxy_ce(proxy_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-proxy, per-sample cross-entropy: [R, B, C], [B] -> [R, B]."""
    R, B, C = proxy_logits.shape
    return F.cross_entropy(proxy_logits.reshape(R * B, C), labels.repeat(R), reduction="none").reshape(R, B)


def _lowest_k(score: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """bool [B, R]: the k valid entries with the lowest score per row (ties: lower index first)."""
    masked = torch.where(valid, score, torch.full_like(score, float("inf")))
    order = torch.sort(masked, dim=1, stable=True).indices[:, :k]
    chosen = torch.zeros_like(valid)
    chosen.scatter_(1, order, True)
    return chosen & valid


def select_proxies(proxy_logits: torch.Tensor, labels: torch.Tensor, k: int, *, mode: str = "topk",
                   views=None, student_ce: torch.Tensor | None = None, ce_cap: float | None = None) -> torch.Tensor:
    """Eq. 4 plus the top-k rule: which proxies teach which sample.

    proxy_logits [R, B, C], labels [B] -> selected bool [B, R].
    Candidates C_i: proxies whose argmax is the label. `fidelity: official` adds two filters:
    the proxy's CE below the student's current CE (`student_ce` [B]) and at most `ce_cap`.
    mode topk: the k candidates with the lowest CE; all: every candidate; ego_exo: the k best
    among proxies whose view is "ego" plus the k best among "exo" (`views`: R names).
    A sample with no candidate selects nothing and gets no distillation.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    ce = proxy_ce(proxy_logits, labels).T  # [B, R]
    valid = (proxy_logits.argmax(-1) == labels[None]).T
    if student_ce is not None:
        valid &= ce < student_ce[:, None]
    if ce_cap is not None:
        valid &= ce <= ce_cap
    if mode == "all":
        return valid
    if mode == "topk":
        return _lowest_k(ce, valid, k)
    if views is None or len(views) != proxy_logits.shape[0]:
        raise ValueError("mode ego_exo needs `views`, one 'ego'/'exo' per proxy")
    selected = torch.zeros_like(valid)
    for view in ("ego", "exo"):
        in_view = torch.tensor([v == view for v in views], device=valid.device)[None].expand_as(valid)
        selected |= _lowest_k(ce, valid & in_view, k)
    return selected


def spd_loss(h_u: torch.Tensor, z_u: torch.Tensor, h_p: torch.Tensor, z_p: torch.Tensor, labels: torch.Tensor,
             selected: torch.Tensor, *, beta_feat: float, beta_logit: float, beta_cls: float, tau: float = 1.0,
             normalize: str = "paper", distilled: float | None = None, micro_batch: int | None = None) -> dict[str, torch.Tensor]:
    """Eq. 5-6.

    h_u [B, D], z_u [B, C]: the student's feature and logits; h_p [R, B, D], z_p [R, B, C]: the
    proxies'; selected [B, R] from `select_proxies`.
    Eq. 5, per sample i with S_i non-empty, each selected proxy weighted 1/|S_i|:
        L_distill(i) = sum_{r in S_i} (beta_feat (1 - cos(h_u,i, h_r,i)) + beta_logit KL(p_r,i || p_u,i)) / |S_i|
    Eq. 6: L = mean_i beta_cls CE(z_u,i, y_i) + (1/N) sum_i 1[S_i != {}] L_distill(i)
    normalize "official" divides the distillation sum by the number of samples with a
    non-empty S_i instead of N (the official code, per micro-batch); `distilled` overrides that
    count (a data-parallel caller passes the global batch's count over the world size, as the
    official code's all-reduce does). The function itself stays pure: no communication.
    `micro_batch` m (with normalize "official"): the batch is m-clip micro-batches, as the
    official code's per-GPU batch of 2; each micro-batch's distillation sum is divided by its own
    count of distilled samples, and the loss is the mean of the micro-batches' losses (what
    accumulating their gradients, each divided by the number of micro-batches, computes).
    Returns {"loss", "cls_loss", "feat_loss", "logit_loss", "distilled"}.
    """
    B = h_u.shape[0]
    w = selected.float()
    n_sel = w.sum(1)  # |S_i|
    w = w / n_sel.clamp(min=1)[:, None]  # [B, R]
    feat = cosine_distance(h_u[None].expand_as(h_p), h_p).T  # [B, R]
    logit = kl_to_student(z_p, z_u[None].expand_as(z_p), tau).T  # [B, R]
    feat_i = (w * feat).sum(1)
    logit_i = (w * logit).sum(1)
    has = n_sel > 0
    if normalize not in ("paper", "official"):
        raise ValueError("normalize must be 'paper' or 'official'")
    if micro_batch is not None:
        if normalize != "official" or distilled is not None:
            raise ValueError("micro_batch normalises per micro-batch: it needs normalize 'official' and no `distilled`")
        if B % micro_batch:
            raise ValueError(f"a batch of {B} is not whole micro-batches of {micro_batch}")
        # per micro-batch: sum / max(1, its distilled count); then the mean over micro-batches
        counts = has.float().view(-1, micro_batch).sum(1).clamp(min=1.0)
        feat_loss = (feat_i.view(-1, micro_batch).sum(1) / counts).mean()
        logit_loss = (logit_i.view(-1, micro_batch).sum(1) / counts).mean()
    else:
        if normalize == "paper":
            denom = B
        else:  # the batch's count of distilled samples, or the caller's (data parallelism)
            denom = distilled if distilled is not None else max(float(has.sum()), 1.0)
        feat_loss = feat_i.sum() / denom
        logit_loss = logit_i.sum() / denom
    cls = F.cross_entropy(z_u, labels)
    loss = beta_cls * cls + beta_feat * feat_loss + beta_logit * logit_loss
    return {"loss": loss, "cls_loss": cls.detach(), "feat_loss": feat_loss.detach(),
            "logit_loss": logit_loss.detach(), "distilled": has.float().mean().detach()}
