"""MS-TCN (Abu Farha & Gall, CVPR 2019): the fixed temporal model of the segmentation benchmark.

A stage is a 1x1 conv (input -> F maps), L dilated residual layers (kernel 3, dilation 2^l,
ReLU, 1x1 conv, dropout, residual add) and a 1x1 conv to the classes. Stage 1 reads the
features; stages 2..S read the softmax of the previous stage's logits. Every stage is
supervised (`mstcn_loss`). Written from the paper's description.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DilatedResidualLayer(nn.Module):
    def __init__(self, dilation: int, channels: int, dropout: float):
        super().__init__()
        self.conv_dilated = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv_1x1 = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x + self.dropout(self.conv_1x1(F.relu(self.conv_dilated(x))))) * mask


class SingleStage(nn.Module):
    def __init__(self, in_dim: int, channels: int, num_classes: int, layers: int, dropout: float):
        super().__init__()
        self.conv_in = nn.Conv1d(in_dim, channels, 1)
        self.layers = nn.ModuleList(DilatedResidualLayer(2 ** i, channels, dropout) for i in range(layers))
        self.conv_out = nn.Conv1d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for layer in self.layers:
            h = layer(h, mask)
        return self.conv_out(h) * mask


class MSTCN(nn.Module):
    """x [B, D, T], mask [B, 1, T] (1 on real frames) -> logits of every stage [S, B, C, T]."""

    def __init__(self, in_dim: int, num_classes: int, *, stages: int = 4, layers: int = 10, channels: int = 64,
                 dropout: float = 0.5):
        super().__init__()
        self.stages = nn.ModuleList([SingleStage(in_dim, channels, num_classes, layers, dropout)]
                                    + [SingleStage(num_classes, channels, num_classes, layers, dropout) for _ in range(stages - 1)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = torch.ones_like(x[:, :1]) if mask is None else mask
        out = self.stages[0](x, mask)
        outs = [out]
        for stage in self.stages[1:]:
            out = stage(F.softmax(out, dim=1) * mask, mask)
            outs.append(out)
        return torch.stack(outs)


def mstcn_loss(stage_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None, *,
               smooth_weight: float = 0.15, tau: float = 4.0) -> torch.Tensor:
    """Sum over stages of CE + smooth_weight x T-MSE, T-MSE = mean over frames and classes of
    min(|log p_t - log p_{t-1}|, tau)^2 with the previous frame detached. [S, B, C, T], [B, T]."""
    mask = torch.ones_like(labels, dtype=stage_logits.dtype) if mask is None else mask.reshape(labels.shape).to(stage_logits.dtype)
    total = stage_logits.new_zeros(())
    for z in stage_logits:
        ce = F.cross_entropy(z, labels, reduction="none")
        total = total + (ce * mask).sum() / mask.sum()
        logp = F.log_softmax(z, dim=1)
        if z.shape[-1] > 1:
            d = (logp[:, :, 1:] - logp[:, :, :-1].detach()) ** 2
            tmse = (d.clamp(max=tau ** 2) * mask[:, None, 1:]).mean()
            total = total + smooth_weight * tmse
    return total
