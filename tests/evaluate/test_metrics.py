"""Metrics against sklearn (random inputs, ties, classes/samples without positives) and on
hand-made examples."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, precision_recall_fscore_support

from evaluate import metrics as M


def _sk_ap_columns(scores, labels):
    out = []
    for c in range(scores.shape[1]):
        if labels[:, c].sum() == 0:
            out.append(np.nan)
        else:
            out.append(average_precision_score(labels[:, c], scores[:, c]))
    return np.array(out)


@pytest.mark.parametrize("seed", range(5))
def test_ap_matches_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    n, c = 57, 14
    scores = rng.normal(size=(n, c))
    labels = (rng.random((n, c)) < 0.25).astype(np.uint8)
    labels[0] = 1  # every class has a positive
    got = M.average_precision(scores, labels)
    np.testing.assert_allclose(got, _sk_ap_columns(scores, labels), atol=1e-9, rtol=0)
    res = M.mean_average_precision(scores, labels)
    assert res.n_skipped == 0 and res.policy == "skip"
    assert abs(res.value - average_precision_score(labels, scores, average="macro")) < 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_ap_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(100 + seed)
    n, c = 40, 6
    # Few distinct values: most scores are tied with others.
    scores = rng.integers(0, 4, size=(n, c)).astype(np.float64) / 4
    labels = (rng.random((n, c)) < 0.4).astype(np.uint8)
    labels[:2] = 1
    np.testing.assert_allclose(M.average_precision(scores, labels),
                               _sk_ap_columns(scores, labels), atol=1e-9, rtol=0)
    mmit = M.mmit_mean_average_precision(scores, labels)
    ref = [average_precision_score(labels[i], scores[i]) for i in range(n) if labels[i].any()]
    assert abs(mmit.value - np.mean(ref)) < 1e-9


def test_ties_differ_from_naive_ranking():
    # All scores equal: sklearn's AP is the positive rate, a naive per-row ranking is not.
    scores = np.zeros((4, 1))
    labels = np.array([[1], [0], [0], [1]])
    assert M.average_precision(scores, labels)[0] == pytest.approx(0.5, abs=1e-12)
    assert average_precision_score(labels[:, 0], scores[:, 0]) == pytest.approx(0.5)


def test_class_without_positives_is_skipped_and_counted():
    rng = np.random.default_rng(7)
    scores = rng.random((30, 5))
    labels = (rng.random((30, 5)) < 0.3).astype(np.uint8)
    labels[:, 0] = 0  # like "Correct" in the composite test split
    labels[:, 3] = 0
    labels[0, [1, 2, 4]] = 1
    res = M.mean_average_precision(scores, labels)
    assert res.n_skipped == 2 and res.skipped == (0, 3) and res.policy == "skip"
    assert np.isnan(res.per_item[[0, 3]]).all()
    kept = [1, 2, 4]
    ref = np.mean([average_precision_score(labels[:, k], scores[:, k]) for k in kept])
    assert abs(res.value - ref) < 1e-9
    zero = M.mean_average_precision(scores, labels, policy="zero")
    assert abs(zero.value - ref * 3 / 5) < 1e-9 and zero.n_skipped == 2
    with pytest.raises(ValueError, match="valid: skip, zero"):
        M.mean_average_precision(scores, labels, policy="drop")


def test_mmit_skips_samples_without_positives():
    rng = np.random.default_rng(3)
    scores = rng.random((12, 14))
    labels = (rng.random((12, 14)) < 0.3).astype(np.uint8)
    labels[[2, 5]] = 0
    labels[0, 0] = 1
    res = M.mmit_mean_average_precision(scores, labels)
    assert res.n_skipped == 2 and res.skipped == (2, 5) and res.n_items == 12
    ref = [average_precision_score(labels[i], scores[i]) for i in range(12) if labels[i].any()]
    assert abs(res.value - np.mean(ref)) < 1e-9
    d = res.to_dict()
    assert d["per_item"][2] is None and d["n_skipped"] == 2


def test_bad_inputs_rejected():
    with pytest.raises(ValueError, match="both be"):
        M.mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        M.mean_average_precision(np.full((2, 2), np.nan), np.ones((2, 2)))


def test_fuse_views_mean_and_max():
    scores = np.array([[0.1, 0.9], [0.3, 0.5], [0.8, 0.2], [0.0, 0.4], [0.6, 0.6]])
    labels = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
    takes = np.array(["b", "b", "a", "a", "a"])
    mean = M.fuse_views(scores, labels, takes, "mean")
    assert mean.take_id.tolist() == ["a", "b"]
    np.testing.assert_allclose(mean.scores, [[(0.8 + 0.0 + 0.6) / 3, (0.2 + 0.4 + 0.6) / 3],
                                             [0.2, 0.7]])
    assert mean.labels.tolist() == [[0, 1], [1, 0]] and mean.n_views.tolist() == [3, 2]
    mx = M.fuse_views(scores, labels, takes, "max")
    np.testing.assert_allclose(mx.scores, [[0.8, 0.6], [0.3, 0.9]])
    with pytest.raises(ValueError, match="take 'b'"):
        M.fuse_views(scores, np.array([[1, 0], [0, 1], [0, 1], [0, 1], [0, 1]]), takes)
    with pytest.raises(ValueError, match="valid: mean, max"):
        M.fuse_views(scores, labels, takes, "median")


def test_grouping_by_number_of_errors_and_view():
    labels = np.array([[0, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1]])
    scores = np.array([[0, .9, .8, .1], [0, .2, .9, .8], [0, .7, .1, .9], [0, .1, .2, .3]])
    n_err = M.number_of_errors(labels)
    assert n_err.tolist() == [2, 3, 2, 2]
    g = M.grouped_map(scores, labels, n_err)
    assert list(g) == [2, 3] and g[2]["n"] == 3 and g[3]["n"] == 1
    # the only 3-error clip ranks its 3 errors ahead of class 0 except one: AP by hand
    # scores row 1: .2 (c1), .9 (c2), .8 (c3), 0 (c0) -> positives at ranks 1,2,3 -> AP 1
    assert g[3]["mmit_map"].value == pytest.approx(1.0)
    sel = n_err == 2
    assert g[2]["map"].value == pytest.approx(M.mean_average_precision(scores[sel], labels[sel]).value)
    views = np.array([1, 2, 1, 2])
    gv = M.grouped_map(scores, labels, views)
    assert list(gv) == [1, 2] and gv[1]["n"] == 2


def test_thresholds_hand_made():
    # class 0: positives 0.9, 0.8; negatives 0.7, 0.1 -> cut between 0.8 and 0.7 (F1 = 1)
    # class 1: no positive in val -> default
    # class 2: positives 0.6, 0.2; negatives 0.5 -> keep all three (F1 0.8) or top one
    #          (F1 0.667): the cut goes below 0.2, i.e. every clip
    scores = np.array([[0.9, 0.3, 0.6], [0.8, 0.2, 0.5], [0.7, 0.1, 0.2], [0.1, 0.0, 0.0]])
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]])
    thr, f1 = M.choose_thresholds(scores, labels, default=0.42)
    assert thr[0] == pytest.approx(0.75) and f1[0] == pytest.approx(1.0)
    assert thr[1] == pytest.approx(0.42) and np.isnan(f1[1])
    assert thr[2] == pytest.approx(0.1) and f1[2] == pytest.approx(0.8)
    pred = M.apply_thresholds(scores, thr)
    assert pred[:, 0].tolist() == [1, 1, 0, 0]


def test_thresholds_match_bruteforce_f1():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(11)
    scores = np.round(rng.random((40, 5)), 1)  # ties
    labels = (rng.random((40, 5)) < 0.3).astype(np.uint8)
    labels[0] = 1
    thr, f1 = M.choose_thresholds(scores, labels)
    for c in range(5):
        best = max(f1_score(labels[:, c], scores[:, c] >= t) for t in np.unique(scores[:, c]))
        assert f1[c] == pytest.approx(best)
        assert f1_score(labels[:, c], scores[:, c] >= thr[c]) == pytest.approx(best)


def test_set_metrics_hand_made_and_sklearn():
    true = np.array([[0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    m = M.set_metrics(pred, true)
    # tp = 2 + 1 + 0 = 3, predicted 4, true 6
    assert m["precision_micro"] == pytest.approx(3 / 4)
    assert m["recall_micro"] == pytest.approx(3 / 6)
    assert m["f1_micro"] == pytest.approx(2 * 3 / 10)
    assert m["exact_set_accuracy"] == pytest.approx(1 / 3)
    assert m["precision_samples"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["recall_samples"] == pytest.approx((1 + 0.5 + 0) / 3)
    rng = np.random.default_rng(5)
    true = (rng.random((50, 14)) < 0.2).astype(int)
    pred = (rng.random((50, 14)) < 0.2).astype(int)
    m = M.set_metrics(pred, true)
    for avg in ("micro", "samples"):
        p, r, f, _ = precision_recall_fscore_support(true, pred, average=avg, zero_division=0)
        assert (m[f"precision_{avg}"], m[f"recall_{avg}"], m[f"f1_{avg}"]) == pytest.approx((p, r, f))
    assert m["exact_set_accuracy"] == pytest.approx(accuracy_score(true, pred))


def test_cooccurrence_and_pr_curve():
    true = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    pred = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 0]])
    counts, rate = M.cooccurrence(pred, true)
    assert counts.tolist() == [[1, 0, 2], [1, 0, 1], [0, 0, 0]]
    assert rate[0].tolist() == [0.5, 0.0, 1.0] and np.isnan(rate[2]).all()
    s = np.array([0.9, 0.5, 0.5, 0.1])
    y = np.array([1, 0, 1, 0])
    r, p = M.pr_curve(s, y)
    assert r.tolist() == [0, 0.5, 1, 1] and p.tolist() == pytest.approx([1, 1, 2 / 3, 0.5])
    # AP is the step integral of this curve
    assert np.sum(np.diff(r) * p[1:]) == pytest.approx(average_precision_score(y, s))


def test_ece_against_a_hand_computed_reference():
    # bins of width 0.1: 0.05 -> bin 0; 0.15, 0.12 -> bin 1; 0.55 -> 5; 0.85 -> 8; 0.95 -> 9
    p = np.array([0.05, 0.15, 0.12, 0.95, 0.85, 0.55])
    y = np.array([0, 0, 1, 1, 1, 0])
    # |acc - conf| per bin, weighted by its share of the 6 predictions
    want = (1 * 0.05 + 2 * abs(0.5 - 0.135) + 1 * 0.55 + 1 * 0.15 + 1 * 0.05) / 6
    assert want == pytest.approx(0.255)
    assert M.expected_calibration_error(p, y, 10) == pytest.approx(want)
    # the (N, C) layout is the same predictions
    assert M.expected_calibration_error(p.reshape(2, 3), y.reshape(2, 3)) == pytest.approx(want)
    b = M.reliability_bins(p, y, 10)
    assert b["count"].tolist() == [1, 2, 0, 0, 0, 1, 0, 0, 1, 1]
    assert b["mean_prob"][1] == pytest.approx(0.135) and b["frequency"][1] == pytest.approx(0.5)
    assert np.isnan(b["frequency"][2])
    # edges: 1.0 falls in the last bin, 0.1 in the second; perfect calibration scores 0
    b = M.reliability_bins(np.array([1.0, 0.1]), np.array([1, 0]), 10)
    assert b["count"][9] == 1 and b["count"][1] == 1
    assert M.expected_calibration_error(np.array([0.0, 1.0, 0.5, 0.5]),
                                        np.array([0, 1, 1, 0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.reliability_bins(np.array([1.5]), np.array([1]))


def test_per_class_prf_matches_sklearn():
    rng = np.random.default_rng(8)
    true = (rng.random((60, 14)) < 0.2).astype(int)
    pred = (rng.random((60, 14)) < 0.2).astype(int)
    true[:, 0] = 0  # a class without positives: recall and F1 0, as sklearn's zero_division=0
    got = M.per_class_prf(pred, true)
    p, r, f, support = precision_recall_fscore_support(true, pred, average=None, zero_division=0)
    np.testing.assert_allclose(got["precision"], p)
    np.testing.assert_allclose(got["recall"], r)
    np.testing.assert_allclose(got["f1"], f)
    assert got["support"].tolist() == support.tolist()
    assert got["predicted"].tolist() == pred.sum(axis=0).tolist()
