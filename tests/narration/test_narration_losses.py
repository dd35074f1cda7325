"""narration/losses.py against a float64 loop reference and CLIP's cross-entropy, and the pooling
of narration/model.py and narration/data.py against hand-computed cases."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from narration.data import segment_windows
from narration.losses import gather, info_nce, info_nce_reference
from narration.model import pool_groups, pool_windows


def _unit(x):
    return F.normalize(x, dim=-1)


def test_matches_the_float64_reference_with_shared_positives():
    g = torch.Generator().manual_seed(0)
    v, t = _unit(torch.randn(7, 5, generator=g)), _unit(torch.randn(7, 5, generator=g))
    keys = torch.tensor([0, 0, 1, 2, 2, 2, 3])  # the views of one take share their text
    got = info_nce(v.double(), t.double(), keys, 3.0)
    assert abs(got.item() - info_nce_reference(v, t, keys, 3.0)) < 1e-10


def test_distinct_keys_give_clip_loss():
    g = torch.Generator().manual_seed(1)
    v, t = _unit(torch.randn(6, 4, generator=g)), _unit(torch.randn(6, 4, generator=g))
    logits = 10.0 * v @ t.T
    want = 0.5 * (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6)))
    torch.testing.assert_close(info_nce(v, t, torch.arange(6), 10.0), want)


def test_aligned_pairs_cost_less_than_shuffled():
    g = torch.Generator().manual_seed(2)
    t = _unit(torch.randn(8, 16, generator=g))
    assert info_nce(t, t, torch.arange(8), 10.0) < info_nce(t.roll(1, 0), t, torch.arange(8), 10.0)


def test_gather_without_a_process_group_is_the_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather(x) is x


def test_segment_windows_by_hand():
    # 4 segments of 0.8 s over 3.2 s: [0, .8] [.8, 1.6] [1.6, 2.4] [2.4, 3.2]
    m = segment_windows(np.array([0.1, 1.0, 3.1, 0.8]), np.array([0.9, 2.5, 3.2, 0.8]), 3.2, 4)
    assert m.tolist() == [[True, True, False, False], [False, True, True, True],
                          [False, False, False, True], [False, True, False, False]]
    # (a point in time overlaps nothing: the segment that starts there takes it)


def test_pooling_by_hand():
    seg = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 0.0]]])  # (B=1, T=3, E=2)
    got = pool_windows(seg, torch.tensor([0, 0]), torch.tensor([[True, True, False],
                                                                [False, False, True]]))
    torch.testing.assert_close(got, torch.tensor([[0.5 ** 0.5, 0.5 ** 0.5], [1.0, 0.0]]))
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    pooled, ids = pool_groups(emb, torch.tensor([5, 2, 5]))
    assert ids.tolist() == [2, 5]
    torch.testing.assert_close(pooled, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
