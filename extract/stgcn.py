"""ST-GCN: a spatial-temporal graph network over the rescuer's 2D keypoints (Yan et al.,
"Spatial Temporal Graph Convolutional Networks for Skeleton-Based Action Recognition", AAAI
2018; the layout of mmaction2's ``STGCN``), written here in plain PyTorch.

The graph is the skeleton file's (:mod:`pipeline.skeleton`): V = 23 joints (COCO-17 plus three
points per hand), bones :data:`pipeline.skeleton.BONES`. Its adjacency is split by the paper's
*spatial* partition into K = 3 matrices (:func:`spatial_partitions`): for a node, the *root*
group (itself and neighbours as far from the centre as it is), the *centripetal* group
(neighbours closer to the centre) and the *centrifugal* group (neighbours farther away). The
centre is the pair of shoulders (COCO has no neck joint; the arms, where most CPR errors live,
then hang off it as centrifugal chains). Each node averages its neighbours: the full adjacency
with self loops is divided by each node's degree, and the three groups sum to it.

Network: a BatchNorm over joints x channels on the input (``data_bn``), then ten blocks, each a
graph convolution (a 1x1 conv to K x C_out channels, summed over the K partitions weighted by a
learned edge importance) and a temporal convolution (BN, ReLU, kernel 9 over time, BN,
dropout), with a residual connection (none in the first block; a strided 1x1 conv where the
shape changes) and a ReLU. Widths 64, 64, 64, 64, 128, 128, 128, 256, 256, 256 with temporal
stride 2 where the width grows; ``channels`` makes them smaller for the CPU demo.

Shapes: input (N, C, T, V): C = 3 channels (x, y, score; see :mod:`extract.skeleton_input`),
T frames, V joints. ``feature_map`` -> (N, D, T', V) with T' = ceil(T / 4) for the paper's two
strides; ``forward`` -> (N, K) class scores (mean over time and joints, dropout, linear);
``segment_features(x, T_seg)`` -> (N, T_seg, D), the feature map averaged over joints and over
T_seg equal windows of time (what ``cprclip extract`` stores).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.skeleton import BONES, KEYPOINTS, NUM_KEYPOINTS

# The paper's widths (mmaction2's STGCN base_channels=64, stage ratios 2 at layers 5 and 8).
PAPER_CHANNELS = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
TEMPORAL_KERNEL = 9  # the paper's temporal kernel: 9 frames, ~0.36 s at 25 fps
IN_CHANNELS = 3  # x, y, score
CENTRE = ("left_shoulder", "right_shoulder")


def hop_distances(num_nodes: int, edges: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(V, V) shortest path lengths in bones; unreachable pairs are ``inf``."""
    d = np.full((num_nodes, num_nodes), np.inf)
    np.fill_diagonal(d, 0)
    for a, b in edges:
        d[a, b] = d[b, a] = 1
    for k in range(num_nodes):  # Floyd-Warshall: V = 23, trivial
        d = np.minimum(d, d[:, k:k + 1] + d[k:k + 1, :])
    return d


def normalized_adjacency(num_nodes: int, edges: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(V, V) bones plus self loops, column ``w`` divided by node ``w``'s degree:
    ``A[v, w]`` is what output node ``w`` takes from input node ``v`` (each column sums to 1)."""
    a = np.eye(num_nodes)
    for i, j in edges:
        a[i, j] = a[j, i] = 1
    return a / a.sum(axis=0, keepdims=True)


def spatial_partitions(num_nodes: int = NUM_KEYPOINTS, edges: tuple[tuple[int, int], ...] = BONES,
                       centre: tuple[int, ...] | None = None) -> np.ndarray:
    """(3, V, V) float32: the root, centripetal and centrifugal parts of
    :func:`normalized_adjacency` (they sum to it). ``centre``: joint indices whose nearest one
    is each node's distance to the centre (default: the shoulders)."""
    if centre is None:
        centre = tuple(KEYPOINTS.index(n) for n in CENTRE)
    hops = hop_distances(num_nodes, edges)
    if not np.isfinite(hops).all():
        raise ValueError("the skeleton graph is not connected")
    dist = hops[:, list(centre)].min(axis=1)  # (V,) bones to the nearest centre joint
    norm = normalized_adjacency(num_nodes, edges)
    out = np.zeros((3, num_nodes, num_nodes))
    for v in range(num_nodes):  # input node
        for w in range(num_nodes):  # output (root) node
            if norm[v, w] == 0:
                continue
            k = 0 if dist[v] == dist[w] else 1 if dist[v] < dist[w] else 2
            out[k, v, w] = norm[v, w]
    return out.astype(np.float32)


class GraphConv(nn.Module):
    """(N, C_in, T, V) -> (N, C_out, T, V): a 1x1 conv per partition, summed over the K
    partitions of ``A`` (K, V, V)."""

    def __init__(self, c_in: int, c_out: int, partitions: int):
        super().__init__()
        self.partitions, self.c_out = partitions, c_out
        self.conv = nn.Conv2d(c_in, c_out * partitions, kernel_size=1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        y = self.conv(x).view(n, self.partitions, self.c_out, t, v)
        return torch.einsum("nkctv,kvw->nctw", y, a)


class STGCNBlock(nn.Module):
    """Graph conv, then temporal conv (stride ``stride`` in time), plus a residual; ReLU."""

    def __init__(self, c_in: int, c_out: int, partitions: int, stride: int = 1,
                 residual: bool = True, dropout: float = 0.0, kernel: int = TEMPORAL_KERNEL):
        super().__init__()
        self.gcn = GraphConv(c_in, c_out, partitions)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, (kernel, 1), (stride, 1), ((kernel - 1) // 2, 0)),
            # no Dropout module at 0: finetune's `dropout` key sets every Dropout (the head's)
            nn.BatchNorm2d(c_out), nn.Dropout(dropout) if dropout else nn.Identity())
        if not residual:
            self.residual: nn.Module | None = None
        elif c_in == c_out and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1, (stride, 1)),
                                          nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x, a))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class STGCN(nn.Module):
    """ST-GCN backbone plus a linear classifier (for fine-tuning); see the module docstring.

    ``channels``: the output width of each block; the temporal stride is 2 where the width
    grows (the paper's layers 5 and 8). ``scores_per_clip``: fine-tuning feeds whole clips
    (finetune.model.SegmentClassifier calls ``forward`` as is).
    """

    scores_per_clip = True

    def __init__(self, num_classes: int = 14, channels: tuple[int, ...] = PAPER_CHANNELS,
                 in_channels: int = IN_CHANNELS, dropout: float = 0.5,
                 block_dropout: float = 0.0, edge_importance: bool = True):
        super().__init__()
        if not channels:
            raise ValueError("ST-GCN needs at least one block")
        a = torch.from_numpy(spatial_partitions())
        self.register_buffer("A", a)  # (K, V, V), fixed; the importance below is learnt
        k, v = a.shape[0], a.shape[1]
        self.data_bn = nn.BatchNorm1d(in_channels * v)
        blocks, c_prev = [], in_channels
        for i, c in enumerate(channels):
            stride = 2 if i > 0 and c > channels[i - 1] else 1
            blocks.append(STGCNBlock(c_prev, c, k, stride, residual=i > 0, dropout=block_dropout))
            c_prev = c
        self.blocks = nn.ModuleList(blocks)
        # One (K, V, V) weight per block on top of the fixed adjacency, initialised to 1.
        self.edge_importance = nn.ParameterList(
            nn.Parameter(torch.ones_like(a), requires_grad=edge_importance) for _ in blocks)
        self.feature_dim = c_prev
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c_prev, num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V) -> (N, D, T', V)."""
        n, c, t, v = x.shape
        x = self.data_bn(x.permute(0, 3, 1, 2).reshape(n, v * c, t))  # per joint and channel
        x = x.view(n, v, c, t).permute(0, 2, 3, 1).contiguous()
        for block, importance in zip(self.blocks, self.edge_importance):
            x = block(x, self.A * importance)
        return x

    def forward(self, x: torch.Tensor, mode: str = "tensor") -> torch.Tensor:
        """(N, C, T, V) -> (N, K) class scores."""
        return self.fc(self.drop(self.feature_map(x).mean(dim=(2, 3))))

    def segment_features(self, x: torch.Tensor, segments: int) -> torch.Tensor:
        """(N, C, T, V) -> (N, segments, D): the feature map averaged over joints, then over
        ``segments`` equal windows of its time axis (adaptive average pooling)."""
        f = self.feature_map(x).mean(dim=3)  # (N, D, T')
        return nn.functional.adaptive_avg_pool1d(f, segments).transpose(1, 2)
