"""The contrastive loss of every level, and the gather that lets DDP compute it on the whole
batch.

``info_nce(video, text, keys, scale)`` is CLIP's symmetric InfoNCE with several positives per
row: items with the same key (the views of one take share their texts) are all positives, each
with weight 1 / (number of positives) in the target distribution (a soft-target cross-entropy,
in both directions). With distinct keys it is exactly CLIP's loss.

Under ``torchrun`` every process embeds its share of the batch; :func:`gather` concatenates
them on every process *with* gradients (forward: all_gather; backward: the summed gradient of
the local slice), so each process computes the loss of the whole batch, and DDP's average of
the weights' gradients equals the single-process gradient (tests/narration: 2 gloo processes
match 1).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch.nn import functional as F


def info_nce(video: torch.Tensor, text: torch.Tensor, keys: torch.Tensor,
             scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE. ``video``, ``text`` (M, E) unit rows, row i of each a
    pair; ``keys`` (M,) int: equal keys are positives of each other. Returns a scalar."""
    logits = scale * video @ text.T  # (M, M)
    pos = (keys[:, None] == keys[None, :]).to(logits.dtype)
    target = pos / pos.sum(1, keepdim=True)
    v2t = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    t2v = -(target * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return 0.5 * (v2t + t2v)


def info_nce_reference(video, text, keys, scale) -> float:
    """The same loss in float64 with explicit loops (tests)."""
    import math

    v = [[float(x) for x in row] for row in video]
    t = [[float(x) for x in row] for row in text]
    k = [int(x) for x in keys]
    m = len(v)
    dot = [[scale * sum(a * b for a, b in zip(v[i], t[j])) for j in range(m)] for i in range(m)]

    def direction(mat):
        total = 0.0
        for i in range(m):
            lse = math.log(sum(math.exp(x) for x in mat[i]))
            pos = [j for j in range(m) if k[j] == k[i]]
            total += -sum(mat[i][j] - lse for j in pos) / len(pos)
        return total / m

    return 0.5 * (direction(dot) + direction([list(r) for r in zip(*dot)]))


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        n = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        dist.all_gather(sizes, n)
        sizes_i = [int(s.item()) for s in sizes]
        pad = x.new_zeros((max(sizes_i),) + tuple(x.shape[1:]))
        pad[:x.shape[0]] = x
        parts = [torch.empty_like(pad) for _ in range(world)]
        dist.all_gather(parts, pad.contiguous())
        ctx.sizes, ctx.rank = sizes_i, rank
        return torch.cat([p[:s] for p, s in zip(parts, sizes_i)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every process's loss reached this slice
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` from every process, concatenated in rank order, gradients kept (the
    identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _Gather.apply(x)


def gather_ints(x: torch.Tensor) -> torch.Tensor:
    """Integer ids gathered the same way (no gradient)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    with torch.no_grad():
        return _Gather.apply(x.to(torch.float64)).round().to(x.dtype)
