"""Losses of frame-level visual-text classification: CLIP's loss with cross-entropy targets,
and the Jensen-Shannon variant (issue 20; the micro-gesture CLIP workflow).

Shapes: B images, C class captions. ``logits[b, c]`` = scale * cos(image b, caption c).

- image -> caption: each row of ``logits`` (over the C captions) against the one-hot target of
  the image's class;
- caption -> image (``symmetric``): for each class present in the batch, its column of
  ``logits`` (over the B images) against the uniform distribution over that class's images,
  as CLIP's text -> image term with several positives.

The two directions are averaged. ``ce`` compares a target p with q = softmax(logits) by
cross-entropy -sum p log q; ``js`` by the Jensen-Shannon divergence
JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2, which is bounded by log 2, so one
confidently wrong image cannot dominate a batch.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_c p_c log softmax(logits)_c. (N, K), (N, K) -> ()."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def js_divergence(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of JS(targets, softmax(logits)) in nats. (N, K), (N, K) -> ().

    log m is computed as logaddexp(log p, log q) - log 2, so a target of exactly 0 (log p =
    -inf) and a probability that underflows in q stay finite; 0 log 0 counts as 0.
    """
    logq = F.log_softmax(logits, dim=1)
    q = logq.exp()
    logp = torch.log(targets)  # -inf where p = 0: logaddexp handles it
    logm = torch.logaddexp(logp, logq) - math.log(2.0)
    kl_pm = (torch.special.xlogy(targets, targets) - targets * logm).sum(dim=1)
    kl_qm = (q * (logq - logm)).sum(dim=1)
    return (0.5 * (kl_pm + kl_qm)).mean()


# loss name -> divergence between a target distribution and softmax(logits). A visible table;
# frames.config.FrameLoss lists the same names.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": soft_cross_entropy,
    "js": js_divergence,
}


def clip_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "ce",
              symmetric: bool = True) -> torch.Tensor:
    """The loss of one batch: ``logits`` (B, C) image-vs-caption, ``labels`` (B,) class ids."""
    try:
        div = LOSSES[kind]
    except KeyError:
        raise ValueError(f"unknown loss {kind!r}; valid: {', '.join(LOSSES)}") from None
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    i2t = div(logits, onehot)
    if not symmetric:
        return i2t
    present = torch.unique(labels)  # (P,) classes with at least one image here
    same = (labels[None, :] == present[:, None]).to(logits.dtype)  # (P, B)
    t2i = div(logits[:, present].t(), same / same.sum(dim=1, keepdim=True))
    return 0.5 * (i2t + t2i)


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)
                 ) -> dict[int, torch.Tensor]:
    """{k: (N,) bool}: whether the true class is among the k highest scores. (N, C), (N,).
    A ``k`` of C or more counts every row correct."""
    c = scores.shape[1]
    top = torch.topk(scores, min(max(ks), c), dim=1).indices  # (N, k)
    hit = top == labels[:, None]
    return {k: hit[:, :min(k, c)].any(dim=1) for k in ks}
