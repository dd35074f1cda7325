"""The maths of rate/depth regression (train/regress_model.py): bins, soft ordinal targets,
the losses against float64 references, decoding, and few-shot sampling (K per bin, seeded)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from train.regress_model import (RegressArgs, RegressHead, bin_centres, bin_index, bin_offset,
                                 check_edges, decode, fewshot_indices, offset_loss, ordinal_loss,
                                 soft_ordinal_targets)

EDGES = np.array([50.0, 60.0, 70.0, 80.0])  # 3 bins: [50,60) [60,70) [70,80]


def test_bins_by_hand():
    assert bin_centres(EDGES).tolist() == [55.0, 65.0, 75.0]
    y = np.array([10.0, 50.0, 59.99, 60.0, 79.9, 80.0, 500.0])
    assert bin_index(y, EDGES).tolist() == [0, 0, 0, 1, 2, 2, 2]  # open end bins
    off = bin_offset(np.array([55.0, 50.0, 59.0, 45.0, 85.0, 62.5]), EDGES)
    np.testing.assert_allclose(off, [0.0, -0.5, 0.4, -0.5, 0.5, -0.25])


@pytest.mark.parametrize("edges, why", [([1, 2], "at least 3"), ([1, 3, 2], "increase"),
                                        ([1, 2, 4], "evenly"), ([1, float("nan"), 3], "finite")])
def test_bad_edges_say_why(edges, why):
    with pytest.raises(ValueError, match=why):
        check_edges(edges)


def test_soft_ordinal_targets_by_hand():
    q = soft_ordinal_targets(np.array([57.0]), EDGES, sharpness=2.0)[0]
    d = np.array([(57 - 55) / 10, (57 - 65) / 10, (57 - 75) / 10])  # distances in bin widths
    ref = np.exp(-2.0 * d ** 2) / np.exp(-2.0 * d ** 2).sum()
    np.testing.assert_allclose(q, ref, rtol=1e-12)
    ys = np.linspace(45.5, 84.5, 40)  # none on an edge, where two bins tie
    many = soft_ordinal_targets(ys, EDGES, 2.0)
    np.testing.assert_allclose(many.sum(1), 1.0)
    assert (many.argmax(1) == bin_index(ys, EDGES)).all()
    # ordinal: weight falls with the distance from the true bin
    q = soft_ordinal_targets(np.array([52.0]), EDGES, 2.0)[0]
    assert q[0] > q[1] > q[2]
    # very sharp targets are one-hot
    assert soft_ordinal_targets(np.array([66.0]), EDGES, 1e4)[0].tolist() == [0.0, 1.0, 0.0]


def test_ordinal_loss_is_kl_in_float64():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 3))
    t = soft_ordinal_targets(rng.uniform(50, 80, 5), EDGES, 2.0)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ref = (t * (np.log(t) - logp)).sum(1).mean()
    got = ordinal_loss(torch.tensor(logits), torch.tensor(t)).item()
    assert got == pytest.approx(ref, rel=1e-10)
    # zero when the predicted distribution is the target
    assert ordinal_loss(torch.tensor(np.log(t)), torch.tensor(t)).item() == pytest.approx(0, abs=1e-12)


def test_offset_loss_uses_the_true_bin_only():
    off = torch.tensor([[0.1, 0.4, -0.3], [0.0, 0.2, 0.25]], dtype=torch.float64)
    k = torch.tensor([1, 2])
    tgt = torch.tensor([0.4, 0.25], dtype=torch.float64)
    assert offset_loss(off, k, tgt).item() == 0.0
    assert offset_loss(off, k, tgt + 1.0).item() > 0.5  # off by a bin width


def test_decode_by_hand():
    logits = torch.tensor([[0.0, np.log(3.0), -1e9]])  # p = 0.25, 0.75, 0
    offsets = torch.tensor([[0.2, -0.1, 0.5]])
    centres, width = torch.tensor([55.0, 65.0, 75.0]), torch.tensor(10.0)
    soft = decode(logits, offsets, centres, width, "soft").item()
    assert soft == pytest.approx(0.25 * 57 + 0.75 * 64)
    assert decode(logits, offsets, centres, width, "hard").item() == pytest.approx(64.0)
    with pytest.raises(ValueError, match="soft, hard"):
        decode(logits, offsets, centres, width, "mode")


def test_fewshot_takes_k_per_bin_with_a_seed():
    y = np.array([51, 52, 53, 54, 55, 61, 62, 71, 72, 73, 74, 75, 76], dtype=float)
    idx = fewshot_indices(y, EDGES, 2, seed=0)
    counts = np.bincount(bin_index(y[idx], EDGES), minlength=3)
    assert counts.tolist() == [2, 2, 2]
    assert (np.diff(idx) > 0).all()  # sorted, no repeats
    assert fewshot_indices(y, EDGES, 2, seed=0).tolist() == idx.tolist()  # same seed, same draw
    others = {tuple(fewshot_indices(y, EDGES, 2, seed=s).tolist()) for s in range(1, 8)}
    assert len(others) > 1  # other seeds draw other videos
    assert len(fewshot_indices(y, EDGES, 5, 0)) == 5 + 2 + 5  # a short bin gives what it has
    assert fewshot_indices(y, EDGES, 0, 0).tolist() == list(range(len(y)))  # 0 = all
    # a bin's draw depends on (seed, bin) only: more rows in bin 0 change no other bin's draw
    y2 = np.concatenate([y, [56.0, 57.0]])
    pick = lambda yy, b: sorted(yy[i] for i in fewshot_indices(yy, EDGES, 2, 3)  # noqa: E731
                                if bin_index(yy[[i]], EDGES)[0] == b)
    assert pick(y, 2) == pick(y2, 2) and pick(y, 1) == pick(y2, 1)


@pytest.mark.parametrize("method, pooling, context, ssm", [("c2f", "mfl", "shared", True),
                                                           ("c2f", "mean", "per_bin", False),
                                                           ("plain", "mfl", "none", True)])
def test_heads_shapes(method, pooling, context, ssm):
    torch.manual_seed(0)
    c2f = method == "c2f"
    args = RegressArgs(dim=6, method=method, pooling=pooling, hidden_dim=8, dropout=0.0,
                       embed_dim=5 if c2f else 0, num_bins=3 if c2f else 0, context=context,
                       logit_scale=10.0, self_similarity=ssm, blocks=(4, 2), segments=4)
    m = RegressHead(args)
    x = torch.randn(7, 4, 6)
    m.set_stats(x.numpy(), np.linspace(50, 80, 7))
    if c2f:
        m.set_bins(np.eye(3, 5), EDGES)
    out = m(x)
    assert out["value"].shape == (7,)
    v, p = m.predict(x)
    assert v.shape == (7,) and (p is None) == (not c2f)
    if c2f:
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
        assert out["offsets"].abs().max() <= 0.5
        assert (v >= 50 - 1e-6).all() and (v <= 80 + 1e-6).all()  # inside the bins' reach
    if pooling == "mfl":
        w = m.pool.weights((x - m.in_mean) / m.in_std)
        np.testing.assert_allclose(w.sum(1).detach().numpy(), 1.0, rtol=1e-6)
    else:  # a linear head stays inside the values it was trained on
        assert (v >= 50 - 1e-6).all() and (v <= 80 + 1e-6).all()
    assert RegressArgs.from_dict(args.to_dict()) == args
    with pytest.raises(ValueError, match="valid: mean, mfl"):
        RegressHead(RegressArgs(**{**args.to_dict(), "pooling": "max"}))


def test_self_similarity_by_hand():
    """Per block: the cosine of every pair of segments after removing the block's mean over T."""
    args = RegressArgs(dim=3, method="plain", pooling="mean", hidden_dim=4, dropout=0.0,
                       embed_dim=0, num_bins=0, context="none", logit_scale=10.0,
                       self_similarity=True, blocks=(2, 1), segments=3)
    m = RegressHead(args)
    x = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 2.0], [-1.0, -1.0, 6.0]]])
    s = m.self_similarity(x)[0].double().numpy()
    a = x[0, :, :2].double().numpy()
    a = a - a.mean(0)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = x[0, :, 2:].double().numpy()
    b = np.sign(b - b.mean(0))  # one dimension: the cosine is the product of signs
    ref = [a[0] @ a[1], a[0] @ a[2], a[1] @ a[2], b[0, 0] * b[1, 0], b[0, 0] * b[2, 0],
           b[1, 0] * b[2, 0]]
    np.testing.assert_allclose(s, ref, atol=1e-6)


def test_choice_literals_match_their_tables():
    from typing import get_args, get_type_hints

    from train.regress import RegressConfig
    from train.regress_model import CONTEXTS, METHODS, POOLINGS

    hints = get_type_hints(RegressConfig)
    assert set(get_args(hints["method"])) == set(METHODS)
    assert set(get_args(hints["pooling"])) == set(POOLINGS)
    assert set(get_args(hints["context"])) == set(CONTEXTS)
