"""The multi-positive contrastive KL and its target matrix, against an independent float64 reference."""
import math

import numpy as np
import torch

from train.losses import bce, contrastive_kl, kl_rows, target_matrix


def test_target_matrix_all_unique_is_identity():
    t = target_matrix(torch.tensor([3, 7, 1, 0]))
    assert torch.equal(t, torch.eye(4))


def test_target_matrix_duplicates_rows_normalised():
    t = target_matrix(torch.tensor([5, 2, 5, 5, 2])).numpy()
    expected = np.array([
        [1 / 3, 0, 1 / 3, 1 / 3, 0],
        [0, 1 / 2, 0, 0, 1 / 2],
        [1 / 3, 0, 1 / 3, 1 / 3, 0],
        [1 / 3, 0, 1 / 3, 1 / 3, 0],
        [0, 1 / 2, 0, 0, 1 / 2],
    ])
    np.testing.assert_allclose(t, expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-7)


def _reference_kl(logits, ids):
    """KL(p_i || softmax(logits_i)) averaged over rows, with plain Python floats (float64)."""
    n = len(ids)
    total = 0.0
    for i in range(n):
        pos = [j for j in range(n) if ids[j] == ids[i]]
        m = max(logits[i])
        log_z = m + math.log(sum(math.exp(v - m) for v in logits[i]))
        for j in pos:
            p = 1.0 / len(pos)
            total += p * (math.log(p) - (logits[i][j] - log_z))
    return total / n


def test_contrastive_kl_matches_float64_reference():
    logits = [[2.0, -1.0, 0.5, 0.0],
              [0.3, 1.5, -0.2, 0.9],
              [1.2, 0.1, 2.2, -0.7],
              [0.0, 0.4, -1.1, 1.8]]
    ids = [4, 9, 4, 2]  # rows 0 and 2 are positives of each other
    lt = torch.tensor(logits, dtype=torch.float32)
    it = torch.tensor(ids)
    v2t = _reference_kl(logits, ids)
    t2v = _reference_kl([list(col) for col in zip(*logits)], ids)
    assert math.isclose(contrastive_kl(lt, it, v2t=True, t2v=False).item(), v2t, rel_tol=1e-5)
    assert math.isclose(contrastive_kl(lt, it, v2t=False, t2v=True).item(), t2v, rel_tol=1e-5)
    assert math.isclose(contrastive_kl(lt, it).item(), (v2t + t2v) / 2, rel_tol=1e-5)
    assert abs(v2t - t2v) > 1e-3  # the example is asymmetric, so the directions are really checked


def test_kl_zero_when_logits_match_targets():
    ids = torch.tensor([0, 1, 0])
    t = target_matrix(ids)
    logits = torch.log(t.clamp_min(1e-30))  # softmax(log p) == p
    assert kl_rows(logits, t).item() < 1e-6


def test_bce_matches_reference():
    logits = torch.tensor([[0.5, -2.0], [3.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ref = 0.0
    for z, y in zip(logits.flatten().tolist(), labels.flatten().tolist()):
        p = 1 / (1 + math.exp(-z))
        ref -= y * math.log(p) + (1 - y) * math.log(1 - p)
    assert math.isclose(bce(logits, labels).item(), ref / 4, rel_tol=1e-5)
