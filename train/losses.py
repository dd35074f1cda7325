"""Losses: the multi-positive contrastive KL of CPR-CLIP, and BCE.

Shapes: B batch, C classes. ``logits[i, j]`` compares video i with the prompt of sample j.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def target_matrix(set_ids: torch.Tensor) -> torch.Tensor:
    """(B,) label-set ids -> (B, B) float targets: 1 where two samples share a label set,
    each row divided by its sum (so a row is a distribution over the batch's positives)."""
    same = (set_ids[:, None] == set_ids[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def kl_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(targets_i || softmax(logits_i)); 0 * log 0 counts as 0."""
    logq = F.log_softmax(logits, dim=1)
    return (torch.special.xlogy(targets, targets) - targets * logq).sum(dim=1).mean()


def contrastive_kl(logits: torch.Tensor, set_ids: torch.Tensor, v2t: bool = True,
                   t2v: bool = True) -> torch.Tensor:
    """Multi-positive contrastive loss on (B, B) video-to-text logits.

    video->text compares each row with the normalised target matrix; text->video does the
    same on the transposed logits. The enabled directions are averaged.
    """
    if not (v2t or t2v):
        raise ValueError("contrastive_kl: enable at least one of v2t, t2v")
    targets = target_matrix(set_ids)
    terms = []
    if v2t:
        terms.append(kl_rows(logits, targets))
    if t2v:
        terms.append(kl_rows(logits.t(), targets.t()))
    return torch.stack(terms).mean()


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, C) logits against (B, C) multi-hot labels, mean over all entries."""
    return F.binary_cross_entropy_with_logits(logits, labels)
