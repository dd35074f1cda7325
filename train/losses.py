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


def softmax_targets(set_ids: torch.Tensor, scale: float = 10.0,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B,) label-set ids -> (B, B) targets of CPR-CLIP's code: ``softmax(scale * GT)`` per row,
    GT = 1 where two samples share a label set (the diagonal included), else 0.

    Unlike :func:`target_matrix` every negative keeps a little mass, ``1 / (k e^scale + B - k)``
    for a row with k positives (the diagonal counted): with scale 10, a row with one positive in
    a batch of 32 puts about 4.5e-5 of its mass on each negative.
    """
    same = (set_ids[:, None] == set_ids[None, :]).to(dtype)
    return torch.softmax(scale * same, dim=1)


def overlap_targets(labels: torch.Tensor) -> torch.Tensor:
    """(B, C) multi-hot labels -> (B, B) targets: the Jaccard overlap |a & b| / |a | b| of the
    two samples' label sets, each row divided by its sum.

    Unlike :func:`target_matrix`, a composite {A, B} and a single {A} are not plain negatives of
    each other: each gets 1/2 of the weight of an exact match. Test scores rank the single-class
    prompts against composite videos, so a loss that pushes a composite away from the prompts of
    its own errors works against them (docs/results.md, issue 14 part 6).
    """
    h = labels.to(torch.float32)
    inter = h @ h.t()
    union = h.sum(dim=1, keepdim=True) + h.sum(dim=1)[None, :] - inter
    tm = inter / union.clamp_min(1.0)
    return tm / tm.sum(dim=1, keepdim=True)


def kl_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(targets_i || softmax(logits_i)); 0 * log 0 counts as 0."""
    logq = F.log_softmax(logits, dim=1)
    return (torch.special.xlogy(targets, targets) - targets * logq).sum(dim=1).mean()


def contrastive_kl(logits: torch.Tensor, set_ids: torch.Tensor, v2t: bool = True,
                   t2v: bool = True, targets: str = "normalised",
                   target_scale: float = 10.0, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-positive contrastive loss on (B, B) video-to-text logits.

    video->text compares each row with the target matrix (``targets = "normalised"``:
    :func:`target_matrix`; ``"softmax"``: :func:`softmax_targets` with ``target_scale``;
    ``"overlap"``: :func:`overlap_targets` of the (B, C) multi-hot ``labels``);
    text->video does the same on the transposed logits. The enabled directions are averaged.
    """
    if not (v2t or t2v):
        raise ValueError("contrastive_kl: enable at least one of v2t, t2v")
    if targets == "normalised":
        tm = target_matrix(set_ids)
    elif targets == "softmax":
        tm = softmax_targets(set_ids, target_scale, logits.dtype)
    elif targets == "overlap":
        if labels is None:
            raise ValueError("contrastive_kl: targets='overlap' needs the samples' labels")
        tm = overlap_targets(labels).to(logits.dtype)
    else:
        raise ValueError(f"unknown KL targets {targets!r}; valid: normalised, softmax, overlap")
    terms = []
    if v2t:
        terms.append(kl_rows(logits, tm))
    if t2v:
        # text j against every video: its positives are the same samples, so its row of targets
        # is row j of the same matrix (for "normalised" that is also tm.t(), bit for bit; the
        # softmax targets are not symmetric, and CPR-CLIP uses them untransposed here too)
        terms.append(kl_rows(logits.t(), tm))
    return torch.stack(terms).mean()


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, C) logits against (B, C) multi-hot labels, mean over all entries."""
    return F.binary_cross_entropy_with_logits(logits, labels)
