"""ST-GCN (Yan et al., AAAI 2018) with the parameter names of pyskl
(kennymckormick/pyskl `pyskl/models/gcns/stgcn.py`, `utils/gcn.py`, `utils/graph.py`), so pyskl
checkpoints load strictly after stripping `backbone.`: `data_bn`, `gcn.{i}.gcn.{PA,A,conv,bn}`,
`gcn.{i}.tcn.{conv,bn}`, `gcn.{i}.residual.{conv,bn}`, head `cls_head.fc_cls`.

Graph: mode 'stgcn_spatial', max_hop 1, K = 3 subsets (root; closer-or-equal to the centre;
further), entries from the column-normalised adjacency with self loops. Layouts coco (17),
openpose (18), nturgb+d (25). Written from the description, not copied.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from uniego.errors import UniegoError

LAYOUTS = {
    "coco": dict(num_node=17, center=0, inward=[
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8),
        (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)]),
    "openpose": dict(num_node=18, center=1, inward=[
        (4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
        (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14)]),
    "nturgb+d": dict(num_node=25, center=20, inward=[(i - 1, j - 1) for i, j in [
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
        (20, 19), (22, 8), (23, 8), (24, 12), (25, 12)]]),
}


def hop_distance(num_node: int, edges, max_hop: int = 1) -> np.ndarray:
    """Hop distance between joints, inf beyond max_hop (as pyskl computes it)."""
    adj = np.eye(num_node)
    for i, j in edges:
        adj[i, j] = adj[j, i] = 1
    dist = np.full((num_node, num_node), np.inf)
    reach = np.stack([np.linalg.matrix_power(adj, d) > 0 for d in range(max_hop + 1)])
    for d in range(max_hop, -1, -1):
        dist[reach[d]] = d
    return dist


def spatial_partition(layout: str, max_hop: int = 1) -> np.ndarray:
    """pyskl `Graph(layout, mode='stgcn_spatial')`.A: [K=2*max_hop+1, V, V], A[k, src, dst]."""
    if layout not in LAYOUTS:
        raise UniegoError(f"unknown skeleton layout {layout!r}; known: {', '.join(LAYOUTS)}")
    spec = LAYOUTS[layout]
    V, c = spec["num_node"], spec["center"]
    dist = hop_distance(V, spec["inward"], max_hop)
    adj = (dist <= max_hop).astype(float)
    col = adj.sum(0)
    norm = adj / np.where(col > 0, col, 1)[None, :]  # column-normalised
    subsets = []
    for hop in range(max_hop + 1):
        close, further = np.zeros((V, V)), np.zeros((V, V))
        for i in range(V):
            for j in range(V):
                if dist[j, i] == hop:
                    if dist[j, c] >= dist[i, c]:
                        close[j, i] = norm[j, i]
                    else:
                        further[j, i] = norm[j, i]
        subsets.append(close)
        if hop > 0:
            subsets.append(further)
    return np.stack(subsets)


class UnitGCN(nn.Module):
    """Graph convolution, adaptive='importance', conv_pos='pre': 1x1 conv to K*out channels,
    aggregation with A * PA, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor):
        super().__init__()
        self.num_subsets = A.shape[0]
        self.register_buffer("A", A.clone())
        self.PA = nn.Parameter(torch.ones_like(A))
        self.conv = nn.Conv2d(in_channels, out_channels * self.num_subsets, 1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        x = self.conv(x).view(n, self.num_subsets, -1, t, v)
        x = torch.einsum("nkctv,kvw->nctw", x, self.A * self.PA).contiguous()
        return self.act(self.bn(x))


class UnitTCN(nn.Module):
    """Temporal convolution (kernel k x 1, stride s x 1), BatchNorm, Dropout."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel_size, 1),
                              padding=((kernel_size - 1) // 2, 0), stride=(stride, 1))
        self.bn = nn.BatchNorm2d(out_channels)
        self.drop = nn.Dropout(dropout, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.bn(self.conv(x)))


class STGCNBlock(nn.Module):
    """y = relu(tcn(gcn(x)) + residual(x))."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, stride: int = 1,
                 residual: bool = True, tcn_dropout: float = 0.0):
        super().__init__()
        self.gcn = UnitGCN(in_channels, out_channels, A)
        self.tcn = UnitTCN(out_channels, out_channels, 9, stride=stride, dropout=tcn_dropout)
        self.relu = nn.ReLU()
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = UnitTCN(in_channels, out_channels, kernel_size=1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = 0 if self.residual is None else self.residual(x)
        return self.relu(self.tcn(self.gcn(x)) + res)


class ClsHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.fc_cls(x)


class STGCN(nn.Module):
    """ST-GCN backbone (+ optional GCNHead classifier).

    Args (keyword-only, pyskl names): layout, in_channels, base_channels, ch_ratio, num_stages,
    inflate_stages, down_stages, tcn_dropout, num_classes (0: forward returns the pooled
    feature). Input x [N, M, T, V, C] (M persons). The feature is the GCNHead input: the
    backbone output averaged over T and V per person, then over persons -> [N, out_channels]
    (256 for the default config).
    """

    def __init__(self, *, layout: str = "coco", in_channels: int = 3, base_channels: int = 64,
                 ch_ratio: int = 2, num_stages: int = 10, inflate_stages=(5, 8), down_stages=(5, 8),
                 tcn_dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        A = torch.tensor(spatial_partition(layout), dtype=torch.float32)
        self.layout = layout
        self.num_joints = A.shape[1]
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.data_bn = nn.BatchNorm1d(in_channels * A.shape[1])
        blocks = []
        if in_channels != base_channels:
            blocks.append(STGCNBlock(in_channels, base_channels, A, 1, residual=False))
        inflate_times, channels = 0, base_channels
        for i in range(2, num_stages + 1):
            stride = 1 + (i in down_stages)
            inflate_times += i in inflate_stages
            out_channels = int(base_channels * ch_ratio ** inflate_times + 1e-4)
            blocks.append(STGCNBlock(channels, out_channels, A, stride, tcn_dropout=tcn_dropout))
            channels = out_channels
        self.gcn = nn.ModuleList(blocks)
        self.num_features = channels
        self.cls_head = ClsHead(channels, num_classes) if num_classes > 0 else None

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, M, T, V, C] -> [N, M, C_out, T', V]."""
        N, M, T, V, C = x.shape
        if V != self.num_joints or C != self.in_channels:
            raise UniegoError(f"ST-GCN ({self.layout}) expects {self.num_joints} joints x "
                              f"{self.in_channels} channels, got {V} x {C}")
        x = x.permute(0, 1, 3, 4, 2).reshape(N * M, V * C, T)
        x = self.data_bn(x).view(N, M, V, C, T).permute(0, 1, 3, 4, 2).reshape(N * M, C, T, V)
        for block in self.gcn:
            x = block(x)
        return x.reshape((N, M) + x.shape[1:])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, M, T, V, C] -> pooled feature [N, C_out] (mean over T, V, then persons)."""
        return self.forward_backbone(x).mean(dim=(3, 4)).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.forward_features(x)
        return feat if self.cls_head is None else self.cls_head(feat)


def stgcn_coco(**kwargs) -> STGCN:
    """pyskl ST-GCN on COCO-17 keypoints (x, y, score): 10 stages, 256-d feature."""
    return STGCN(**{"layout": "coco", **kwargs})


def stgcn_test(**kwargs) -> STGCN:
    """Tiny ST-GCN for tests and the demo: 4 stages from 8 channels, 16-d feature."""
    return STGCN(**{"layout": "coco", "base_channels": 8, "num_stages": 4,
                    "inflate_stages": (3,), "down_stages": (3,), **kwargs})


def pyskl_state_dict(obj: dict) -> dict:
    """Backbone (+ head) weights from a pyskl/mmcv checkpoint `{'state_dict': {'backbone.*', 'cls_head.*'}}`."""
    state = obj.get("state_dict", obj)
    return {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in state.items()}
