"""The frame losses against independent float64 references (numpy loops, no torch)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from frames.losses import LOSSES, clip_loss, js_divergence, soft_cross_entropy, topk_correct


def _softmax64(row: np.ndarray) -> np.ndarray:
    z = np.exp(row - row.max())
    return z / z.sum()


def js_reference(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean over rows of JS(p, q), q = softmax(row), from its definition in float64."""
    out = []
    for row, p in zip(logits.astype(np.float64), targets.astype(np.float64)):
        q = _softmax64(row)
        m = 0.5 * (p + q)
        kl_pm = sum(pi * math.log(pi / mi) for pi, mi in zip(p, m) if pi > 0)
        kl_qm = sum(qi * math.log(qi / mi) for qi, mi in zip(q, m) if qi > 0)
        out.append(0.5 * kl_pm + 0.5 * kl_qm)
    return float(np.mean(out))


def ce_reference(logits: np.ndarray, targets: np.ndarray) -> float:
    out = []
    for row, p in zip(logits.astype(np.float64), targets.astype(np.float64)):
        q = _softmax64(row)
        out.append(-sum(pi * math.log(qi) for pi, qi in zip(p, q) if pi > 0))
    return float(np.mean(out))


def clip_reference(logits: np.ndarray, labels: np.ndarray, div, symmetric: bool) -> float:
    """Both directions built by hand: rows against one-hot classes; for each class present,
    its column against the uniform distribution over its images."""
    n, c = logits.shape
    onehot = np.eye(c)[labels]
    i2t = div(logits, onehot)
    if not symmetric:
        return i2t
    present = sorted(set(labels.tolist()))
    cols = np.stack([logits[:, k] for k in present])
    tgt = np.stack([(labels == k) / (labels == k).sum() for k in present])
    return 0.5 * (i2t + div(cols, tgt))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_js_against_float64_reference(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (7, 14)).astype(np.float32)
    soft = rng.dirichlet(np.ones(14), 7).astype(np.float32)
    onehot = np.eye(14, dtype=np.float32)[rng.integers(0, 14, 7)]
    for targets in (soft, onehot):
        got = js_divergence(torch.from_numpy(logits), torch.from_numpy(targets)).item()
        assert got == pytest.approx(js_reference(logits, targets), rel=1e-5, abs=1e-6)


def test_js_bounds_and_extremes():
    t = torch.eye(4)
    assert js_divergence(torch.eye(4) * 60, t).item() == pytest.approx(0.0, abs=1e-6)
    # a confident wrong answer costs at most log 2 (CE would grow without bound)
    wrong = js_divergence(torch.roll(torch.eye(4), 1, dims=1) * 200, t).item()
    assert wrong == pytest.approx(math.log(2), rel=1e-4)
    assert wrong <= math.log(2) + 1e-6
    assert torch.isfinite(js_divergence(torch.tensor([[1000.0, -1000.0]]), torch.tensor([[0.0, 1.0]])))
    g = torch.randn(3, 5, requires_grad=True)
    js_divergence(g, torch.eye(5)[:3]).backward()
    assert torch.isfinite(g.grad).all() and g.grad.abs().sum() > 0


def test_ce_is_cross_entropy():
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(0, 3, (9, 14)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 14, 9))
    got = soft_cross_entropy(logits, F.one_hot(y, 14).float()).item()
    assert got == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    soft = rng.dirichlet(np.ones(14), 9).astype(np.float32)
    assert soft_cross_entropy(logits, torch.from_numpy(soft)).item() == pytest.approx(
        ce_reference(logits.numpy(), soft), rel=1e-5)


@pytest.mark.parametrize("kind,ref", [("ce", ce_reference), ("js", js_reference)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_clip_loss_both_directions(kind, ref, symmetric):
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 3, (12, 14)).astype(np.float32)
    labels = np.array([0, 0, 3, 3, 3, 5, 7, 7, 13, 2, 2, 9])  # several images per class
    got = clip_loss(torch.from_numpy(logits), torch.from_numpy(labels), kind, symmetric).item()
    assert got == pytest.approx(clip_reference(logits, labels, ref, symmetric), rel=1e-5)
    with pytest.raises(ValueError, match="valid: ce, js"):
        clip_loss(torch.from_numpy(logits), torch.from_numpy(labels), "kl")
    assert set(LOSSES) == {"ce", "js"}


def test_topk_against_hand_computed():
    s = torch.tensor([[0.1, 0.5, 0.2, 0.9], [0.8, 0.1, 0.05, 0.3], [0.2, 0.1, 0.3, 0.4]])
    y = torch.tensor([1, 0, 1])
    hit = topk_correct(s, y, (1, 2, 5))
    assert hit[1].tolist() == [False, True, False]
    assert hit[2].tolist() == [True, True, False]  # row 0: 3 then 1; row 2: 3 then 2
    assert hit[5].tolist() == [True, True, True]  # k >= C: every row


def test_config_choices_match_the_tables():
    import typing

    from extract.backbones import BACKBONES
    from frames.config import FrameBackbone, FrameLoss, TextEncoderName
    from train.text import TEXT_ENCODERS

    assert set(typing.get_args(FrameLoss)) == set(LOSSES)
    assert set(typing.get_args(TextEncoderName)) == set(TEXT_ENCODERS)
    for name in typing.get_args(FrameBackbone):  # 2D backbones that score one frame alone
        assert "rgb" in BACKBONES[name].modalities and BACKBONES[name].family != "tsm"
