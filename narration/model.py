"""The trainable video side: per-segment features -> the frozen text encoder's space.

``SegmentProjection`` standardises each feature (with the training rows' own mean and spread,
fixed buffers: no labels involved), then a two-layer MLP per segment maps D to E. Pooling is
outside the module, so one forward pass serves every level of the loss (clip windows, takes,
sessions) and DDP sees every weight used in ``forward``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp


@dataclass(frozen=True)
class ModelArgs:
    in_dim: int  # D: the streams' features concatenated
    embed_dim: int  # E: the text encoder's
    hidden: int = 512
    dropout: float = 0.1
    logit_scale: float = 1 / 0.07
    learn_logit_scale: bool = True
    dims: tuple[int, ...] = ()  # D per stream, in modality order (a record, not used)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SegmentProjection(nn.Module):
    """(B, T, D) features -> (B, T, E) embeddings (not normalised), and the logit scale."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.register_buffer("mean", torch.zeros(args.in_dim))
        self.register_buffer("std", torch.ones(args.in_dim))
        self.net = nn.Sequential(nn.Linear(args.in_dim, args.hidden), nn.GELU(),
                                 nn.Dropout(args.dropout), nn.Linear(args.hidden, args.embed_dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(args.logit_scale)),
                                      requires_grad=args.learn_logit_scale)

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Mean and spread per feature over (N, T, D) training features."""
        flat = features.reshape(-1, features.shape[-1]).double()
        self.mean.copy_(flat.mean(0).float())
        self.std.copy_(flat.std(0).clamp_min(1e-6).float())

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net((x - self.mean) / self.std), self.scale()


def pool_windows(seg: torch.Tensor, line_video: torch.Tensor, line_mask: torch.Tensor
                 ) -> torch.Tensor:
    """(L, E) unit embeddings: the mean of the segments under each line. ``seg`` (B, T, E),
    ``line_video`` (L,) row in the batch, ``line_mask`` (L, T) bool."""
    m = line_mask.to(seg.dtype)
    pooled = (seg[line_video] * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
    return F.normalize(pooled, dim=-1)


def pool_takes(seg: torch.Tensor) -> torch.Tensor:
    """(B, E) unit embeddings: the mean over all T segments of each video."""
    return F.normalize(seg.mean(1), dim=-1)


def pool_groups(emb: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, E) unit means of ``emb`` (B, E) rows per distinct ``group`` id (sorted), and the ids."""
    ids, inv = torch.unique(group, sorted=True, return_inverse=True)
    sums = torch.zeros(len(ids), emb.shape[1], dtype=emb.dtype, device=emb.device)
    sums = sums.index_add(0, inv, emb)
    return F.normalize(sums, dim=-1), ids
