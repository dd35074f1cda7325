"""Composite-error metrics: pure, vectorised numpy (arrays in, arrays out).

Shapes: ``scores`` and ``labels`` are (N, C) — N clips (or takes), C classes; labels are 0/1.

- :func:`average_precision` — AP of every column, exactly sklearn's step-wise definition
  ``AP = sum_k (R_k - R_{k-1}) P_k`` over the *distinct* score thresholds, so tied scores form
  one threshold (no interpolation, no random tie-breaking).
- :func:`mean_average_precision` — AP per class, averaged over classes.
- :func:`mmit_mean_average_precision` — AP per sample over its C class scores, averaged over
  samples (the Multi-Moments-in-Time style "sample mAP").
- :func:`fuse_views` — the scores of the views of one take, averaged or max-pooled.
- :func:`grouped_map` — mAP and MMIT mAP per group (number of errors, view).
- :func:`choose_thresholds` / :func:`apply_thresholds` / :func:`set_metrics` /
  :func:`per_class_prf` — decisions.
- :func:`expected_calibration_error` / :func:`reliability_bins` — calibration.

A class (or sample) without positives has no defined AP. What happens to it is an explicit
*policy* from :data:`NO_POSITIVE_POLICIES`, and every result says which policy ran and how many
items it left out, so nothing is dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# What to do with a class/sample that has no positive label (its AP is undefined):
NO_POSITIVE_POLICIES: dict[str, str] = {
    # left out of the mean and counted in n_skipped (the CPR-Coach convention: "Correct" never
    # occurs in a composite test clip, so it cannot be ranked)
    "skip": "left out of the mean",
    # counted as AP 0 — pessimistic, and it makes the number depend on the label space
    "zero": "counted as AP = 0",
}


@dataclass(frozen=True)
class APResult:
    """A mean AP and its parts.

    ``per_item`` is (C,) for class mAP or (N,) for MMIT mAP; NaN where the item had no
    positives (under either policy, so the reader can see which ones). ``value`` is NaN when no
    item could be evaluated.
    """

    value: float
    per_item: np.ndarray
    n_items: int
    n_skipped: int
    policy: str
    skipped: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            "value": _clean(self.value),
            "per_item": [_clean(v) for v in self.per_item.tolist()],
            "n_items": self.n_items,
            "n_skipped": self.n_skipped,
            "skipped": list(self.skipped),
            "policy": self.policy,
        }


def _clean(v: float) -> float | None:
    """JSON has no NaN: undefined values become null."""
    return None if v is None or not np.isfinite(v) else float(v)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be (N, C)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or Inf")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return scores, labels.astype(np.float64)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AP of every column of (N, C) ``scores`` against 0/1 ``labels``; (C,), NaN if no positive.

    Equals ``sklearn.metrics.average_precision_score(labels[:, c], scores[:, c])``. Sorting by
    descending score, precision is taken at the *end* of each run of tied scores, so every
    positive in a tie group gets the precision of the whole group:
    ``AP = (1/P) * sum_j y_j * tp(end(j)) / (end(j) + 1)``.
    """
    scores, labels = _check(scores, labels)
    n, c = scores.shape
    if n == 0:
        return np.full(c, np.nan)
    order = np.argsort(-scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, axis=0)
    y = np.take_along_axis(labels, order, axis=0)
    tp = np.cumsum(y, axis=0)
    # Position i ends a tie group when the next score differs (or i is the last row).
    ends = np.ones_like(s, dtype=bool)
    ends[:-1] = s[:-1] != s[1:]
    idx = np.arange(n)[:, None]
    # For every row, the index of the end of its tie group: reverse running minimum.
    end_at = np.where(ends, idx, n)
    end_of = np.minimum.accumulate(end_at[::-1], axis=0)[::-1]
    precision_at_end = np.take_along_axis(tp, end_of, axis=0) / (end_of + 1)
    n_pos = y.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (y * precision_at_end).sum(axis=0) / n_pos
    return np.where(n_pos > 0, ap, np.nan)


def _mean_ap(per_item: np.ndarray, policy: str) -> APResult:
    if policy not in NO_POSITIVE_POLICIES:
        raise ValueError(f"unknown no-positive policy {policy!r}; valid: {', '.join(NO_POSITIVE_POLICIES)}")
    undefined = np.isnan(per_item)
    skipped = tuple(int(i) for i in np.flatnonzero(undefined))
    if policy == "zero":
        vals = np.where(undefined, 0.0, per_item)
        value = float(vals.mean()) if len(vals) else float("nan")
    else:
        kept = per_item[~undefined]
        value = float(kept.mean()) if len(kept) else float("nan")
    return APResult(value, per_item, len(per_item), len(skipped), policy, skipped)


def mean_average_precision(scores: np.ndarray, labels: np.ndarray, policy: str = "skip") -> APResult:
    """Class mAP: AP per class (column) of (N, C) inputs, averaged over the C classes."""
    return _mean_ap(average_precision(scores, labels), policy)


def mmit_mean_average_precision(scores: np.ndarray, labels: np.ndarray,
                                policy: str = "skip") -> APResult:
    """Sample mAP (MMIT style): AP per sample (row) over its C class scores, averaged over N."""
    scores, labels = _check(scores, labels)
    return _mean_ap(average_precision(scores.T, labels.T), policy)


# --- grouping and view fusion -------------------------------------------------------------

def grouped_map(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                policy: str = "skip") -> dict:
    """mAP and MMIT mAP for the rows of each value of ``groups`` (N,), e.g. number of errors.

    Returns ``{group: {"n": rows, "map": APResult, "mmit_map": APResult}}`` in sorted order.
    """
    groups = np.asarray(groups)
    out = {}
    for g in np.unique(groups):
        m = groups == g
        out[g.item() if hasattr(g, "item") else g] = {
            "n": int(m.sum()),
            "map": mean_average_precision(scores[m], labels[m], policy),
            "mmit_map": mmit_mean_average_precision(scores[m], labels[m], policy),
        }
    return out


def number_of_errors(labels: np.ndarray) -> np.ndarray:
    """(N,) number of error classes in each (N, C) label row (class 0, "Correct", is no error)."""
    labels = np.asarray(labels)
    return labels[:, 1:].sum(axis=1).astype(np.int64)


FUSIONS = ("mean", "max")


@dataclass(frozen=True)
class Fused:
    """Take-level scores: ``scores``/``labels`` (K, C), ``take_id`` (K,), ``n_views`` (K,)."""

    scores: np.ndarray
    labels: np.ndarray
    take_id: np.ndarray
    n_views: np.ndarray


def fuse_views(scores: np.ndarray, labels: np.ndarray, take_id: np.ndarray,
               method: str = "mean") -> Fused:
    """Pool the (N, C) scores of the views of each take into (K, C), K = number of takes.

    ``method`` is ``mean`` (average over views) or ``max`` (max-pooling). Takes come out in
    sorted take_id order. The views of one take must share their labels.
    """
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion {method!r}; valid: {', '.join(FUSIONS)}")
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    take_id = np.asarray(take_id)
    if scores.shape != labels.shape or len(take_id) != len(scores):
        raise ValueError(f"scores {scores.shape}, labels {labels.shape} and take_id "
                         f"{take_id.shape} disagree")
    takes, inv, counts = np.unique(take_id, return_inverse=True, return_counts=True)
    k, c = len(takes), scores.shape[1]
    take_labels = np.zeros((k, c), dtype=labels.dtype)
    take_labels[inv] = labels
    # Every view's labels must equal the take's (the last view written above).
    bad = (take_labels[inv] != labels).any(axis=1)
    if bad.any():
        raise ValueError(f"take {str(take_id[bad][0])!r}: views have different labels")
    if method == "mean":
        fused = np.zeros((k, c))
        np.add.at(fused, inv, scores)
        fused /= counts[:, None]
    else:
        fused = np.full((k, c), -np.inf)
        np.maximum.at(fused, inv, scores)
    return Fused(fused, take_labels, takes, counts)


# --- decisions: per-class thresholds and predicted error sets -------------------------------

THRESHOLD_RULES: dict[str, str] = {
    # every rule below on val, and the one with the best micro F1 on held-out imagined
    # composites plus the val singles is kept (evaluate.runner.choose_operating_point)
    "auto": "the best of the rules below on val (imagined composites + singles)",
    # one calibrated probability mark for every error, the best micro F1 on val singles +
    # imagined composites: the same level for all, so a reported error is never less likely
    # than one left out
    "calibrated_global": "one calibrated probability mark for every error, best F1 on val",
    # per class, the threshold that maximises that class's one-vs-rest F1 on the val singles
    "val_f1": "per-class threshold maximising one-vs-rest F1 on the val singles",
    # the same on val singles plus composites imagined from them (what the assistant meets)
    "imagined_f1": "per-class threshold maximising F1 on val singles + imagined composites",
    # an error is reported when it is more likely present than not: with independent calibrated
    # probabilities that is the most likely valid error set
    "calibrated_half": "calibrated probability >= 0.5 (the most likely valid set)",
    # one calibrated mark for every error, the lowest whose val micro precision reaches
    # [eval] target_precision: the most errors found while few reports are false alarms
    "calibrated_precision": "one calibrated probability mark for every error, the lowest with "
                            "val precision >= target_precision",
}


def choose_thresholds(scores: np.ndarray, labels: np.ndarray,
                      default: float | np.ndarray = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-class thresholds (C,) maximising each class's F1 on (N, C) val scores/labels.

    The cut is placed halfway between the lowest score kept and the highest score left out, so
    the threshold does not sit exactly on a val score. A class is predicted when
    ``score >= threshold``. A class with no positive in val keeps ``default`` (a scalar or a (C,)
    array). Returns ``(thresholds, best_f1)``; best_f1 is NaN where the default was used.

    Ties: all clips of a run of tied scores are cut together (as in AP). Among equal F1 the
    highest threshold wins (fewer false alarms).
    """
    scores, labels = _check(scores, labels)
    n, c = scores.shape
    defaults = np.broadcast_to(np.asarray(default, dtype=np.float64), (c,)).copy()
    if n == 0:
        return defaults, np.full(c, np.nan)
    order = np.argsort(-scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, axis=0)
    y = np.take_along_axis(labels, order, axis=0)
    tp = np.cumsum(y, axis=0)
    n_pos = y.sum(axis=0)
    ends = np.ones_like(s, dtype=bool)
    ends[:-1] = s[:-1] != s[1:]
    kept = np.arange(1, n + 1)[:, None]
    f1 = np.where(ends, 2 * tp / (kept + n_pos), -1.0)  # only whole tie groups are candidates
    best = np.argmax(f1, axis=0)  # first maximum = highest threshold
    cols = np.arange(c)
    lowest_kept = s[best, cols]
    below = np.where(best + 1 < n, s[np.minimum(best + 1, n - 1), cols], lowest_kept - 1.0)
    thr = np.where(best + 1 < n, (lowest_kept + below) / 2, lowest_kept)
    best_f1 = f1[best, cols]
    has_pos = n_pos > 0
    return np.where(has_pos, thr, defaults), np.where(has_pos, best_f1, np.nan)


def apply_thresholds(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N, C) 0/1 predictions: score >= the class's threshold."""
    return (np.asarray(scores) >= np.asarray(thresholds)[None, :]).astype(np.uint8)


def set_metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of predicted label sets, micro and sample-averaged, and the
    exact-set accuracy. ``pred`` and ``labels`` are (N, C) 0/1.

    Micro: pooled counts over all clips and classes. Samples: P, R, F1 per clip, then averaged;
    a clip with an empty predicted (or true) set scores 0 for the undefined ratio (sklearn's
    ``zero_division=0``). Exact: the predicted set equals the true set.
    """
    pred = np.asarray(pred).astype(bool)
    true = np.asarray(labels).astype(bool)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"pred {pred.shape} and labels {true.shape} must both be (N, C)")
    tp_row = (pred & true).sum(axis=1).astype(np.float64)
    np_row = pred.sum(axis=1).astype(np.float64)
    nt_row = true.sum(axis=1).astype(np.float64)

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)

    tp, npred, ntrue = tp_row.sum(), np_row.sum(), nt_row.sum()
    p_micro = float(ratio(np.array(tp), np.array(npred)))
    r_micro = float(ratio(np.array(tp), np.array(ntrue)))
    f_micro = float(ratio(np.array(2 * tp), np.array(npred + ntrue)))
    n = len(pred)
    mean = (lambda v: float(v.mean())) if n else (lambda v: float("nan"))
    return {
        "n": n,
        "precision_micro": p_micro,
        "recall_micro": r_micro,
        "f1_micro": f_micro,
        "precision_samples": mean(ratio(tp_row, np_row)),
        "recall_samples": mean(ratio(tp_row, nt_row)),
        "f1_samples": mean(ratio(2 * tp_row, np_row + nt_row)),
        "exact_set_accuracy": mean((pred == true).all(axis=1).astype(np.float64)),
        "mean_predicted_set_size": mean(np_row),
    }


def cooccurrence(pred: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted-vs-true co-occurrence: ``counts[i, j]`` = clips whose true set has class i and
    whose predicted set has class j; ``rate`` = counts / (clips with true class i), NaN for a
    class that never occurs. The diagonal of ``rate`` is the per-class recall. (C, C) each.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(labels, dtype=np.float64)
    counts = true.T @ pred
    n_true = true.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_true[:, None] > 0, counts / n_true[:, None], np.nan)
    return counts, rate


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step-wise precision-recall points of one ranking (1-D inputs), one per distinct score,
    plus the (recall 0, precision 1) start; what :func:`average_precision` integrates."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    ends = np.ones(len(s), dtype=bool)
    ends[:-1] = s[:-1] != s[1:]
    k = np.flatnonzero(ends)
    n_pos = max(tp[-1] if len(tp) else 0.0, 1.0)
    recall = np.concatenate([[0.0], tp[k] / n_pos])
    precision = np.concatenate([[1.0], tp[k] / (k + 1)])
    return recall, precision


def per_class_prf(pred: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 of (N, C) 0/1 ``pred`` against ``labels``, each (C,),
    plus ``support`` (true count) and ``predicted`` (predicted count). An undefined ratio is 0
    (sklearn's ``zero_division=0``)."""
    pred = np.asarray(pred).astype(bool)
    true = np.asarray(labels).astype(bool)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"pred {pred.shape} and labels {true.shape} must both be (N, C)")
    tp = (pred & true).sum(axis=0).astype(np.float64)
    npred = pred.sum(axis=0).astype(np.float64)
    ntrue = true.sum(axis=0).astype(np.float64)

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    return {"precision": ratio(tp, npred), "recall": ratio(tp, ntrue),
            "f1": ratio(2 * tp, npred + ntrue), "support": ntrue.astype(np.int64),
            "predicted": npred.astype(np.int64)}


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Equal-width bins of predicted probability over [0, 1] (the last bin includes 1).

    Every (row, class) pair of (N, C) inputs (or (N,)) is one prediction. Returns ``edges``
    (n_bins + 1,), and per bin ``count``, ``mean_prob`` and ``frequency`` (the share of
    positives; NaN in an empty bin)."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"probs {np.shape(probs)} and labels {np.shape(labels)} differ")
    if len(p) and (p.min() < 0 or p.max() > 1 or not np.isfinite(p).all()):
        raise ValueError("probabilities must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        freq = np.where(count > 0, sum_y / count, np.nan)
    return {"edges": edges, "count": count.astype(np.int64), "mean_prob": mean_p,
            "frequency": freq}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """ECE = sum over bins of (share of predictions in the bin) * |frequency - mean probability|,
    with the equal-width bins of :func:`reliability_bins`. NaN without predictions."""
    b = reliability_bins(probs, labels, n_bins)
    n = b["count"].sum()
    if n == 0:
        return float("nan")
    used = b["count"] > 0
    return float(np.sum(b["count"][used] / n * np.abs(b["frequency"][used] - b["mean_prob"][used])))
