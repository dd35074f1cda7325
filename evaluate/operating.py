"""Choosing a head's operating point on val: calibration, marks, and the rule that wins.

Val holds single-class takes of held-out people; the assistant mostly meets takes with several
errors. So, besides the real val singles, composites are *imagined* from them with the training
stage's own imagination (:func:`train.data.imagine`: a label set, one val clip per error,
convex Dirichlet weights, with the run's ``imagine_sizes``, ``mix`` and ``mix_alpha``). The
views of a take are mixed with the same clips and weights (they are stacked along D before
mixing), so an imagined take has V views like a real one and is fused the same way.

Two independent imagined draws are made: ``tune`` (with the val singles it fits the calibration
and the F1 marks) and ``compare`` (with the val singles it ranks the candidate rules), so the
winner is not chosen on the takes its marks were fitted to. Test labels are never used.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluate import metrics as M
from evaluate.calibration import fit_calibration, transform_for
from evaluate.decide import OperatingPoint, decide_many
from pipeline.taxonomy import CLASSES, CORRECT, NUM_CLASSES, composite_label_sets, multi_hot

log = logging.getLogger(__name__)

# Candidate rules, most readable first: within RULE_TIE of the best val F1 the first one wins,
# since one mark for every error reads plainly ("reported from 20 % likely") and val
# differences that small are noise.
RULE_ORDER = ("calibrated_global", "imagined_f1", "calibrated_half", "val_f1", "calibrated_precision")
RULE_TIE = 0.01
_CHUNK = 128  # imagined takes per block: bounds memory at real feature sizes


# --- imagined val takes --------------------------------------------------------------------

def imagined_takes(val_x: dict[str, np.ndarray], labels: np.ndarray, take_id: np.ndarray,
                   view: np.ndarray, n: int, run_config: dict[str, Any], seed: int, draw: int
                   ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """Blocks of imagined composite takes built from the val single-class takes.

    ``val_x``: {modality: (N, T, D)} per video, ``labels`` (N, C), ``take_id``/``view`` (N,).
    Yields ``(features {modality: (B*V, T, D)}, labels (B*V, C), take_id (B*V,))`` per video,
    the V views of each imagined take next to each other. Yields nothing when val cannot make a
    composite (fewer than two error classes)."""
    from train.data import imaginable_sets, imagine

    takes: dict[str, dict[int, int]] = {}
    for i in np.flatnonzero(labels.sum(axis=1) == 1):
        takes.setdefault(str(take_id[i]), {})[int(view[i])] = int(i)
    if not takes or n <= 0:
        return
    # the most common view set; takes with fewer views are left out (a take mixes whole takes)
    views = Counter(tuple(sorted(v)) for v in takes.values()).most_common(1)[0][0]
    rows = np.array([[takes[t][v] for v in views] for t in sorted(takes)
                     if set(views) <= set(takes[t])])  # (K, V)
    classes = labels[rows[:, 0]].argmax(axis=1)
    sizes = tuple(sorted({int(s) for s in run_config.get("imagine_sizes", (2, 3, 4))}))
    label_sets = composite_label_sets(sizes)
    present = set(int(c) for c in classes) - {CORRECT}
    usable = []
    for size in sizes:
        try:
            imaginable_sets(label_sets, present, (size,))
            usable.append(size)
        except ValueError:
            pass
    if not usable:
        log.warning("val has too few error classes (%s) to imagine composites", sorted(present))
        return
    by_size = imaginable_sets(label_sets, present, tuple(usable))
    mods = list(val_x)
    dims = [val_x[m].shape[-1] for m in mods]
    # (K, T, V * sum D): views side by side, so one draw mixes every view alike
    stacked = np.concatenate([np.concatenate([val_x[m][rows[:, v]] for m in mods], axis=-1)
                              for v in range(len(views))], axis=-1).astype(np.float32)
    mix = str(run_config.get("mix", "segment"))
    alpha = float(run_config.get("mix_alpha", 1.0))
    rng = np.random.default_rng([seed, draw])
    done = 0
    while done < n:
        b = min(_CHUNK, n - done)
        x, set_ids = imagine(stacked, classes, label_sets, by_size, b, mix, alpha, rng)
        t = x.shape[1]
        x = x.reshape(b, t, len(views), sum(dims)).transpose(0, 2, 1, 3)  # (B, V, T, sum D)
        x = x.reshape(b * len(views), t, sum(dims))
        feats, start = {}, 0
        for m, d in zip(mods, dims):
            feats[m] = x[..., start:start + d]
            start += d
        y = np.repeat(np.stack([multi_hot(label_sets[s]) for s in set_ids]), len(views), axis=0)
        ids = np.repeat(np.array([f"imagined{draw}-{done + i:05d}" for i in range(b)]), len(views))
        yield feats, y, ids
        done += b


# --- the operating point -------------------------------------------------------------------

@dataclass
class Units:
    """Decision units (takes after view fusion, or videos): raw ``scores`` (K, C), ``labels``."""

    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def join(*parts: "Units | None") -> "Units":
        have = [p for p in parts if p is not None and len(p)]
        if not have:
            return Units(np.zeros((0, NUM_CLASSES)), np.zeros((0, NUM_CLASSES), np.uint8))
        return Units(np.concatenate([p.scores for p in have]),
                     np.concatenate([p.labels for p in have]))


def rule_figures(scores: np.ndarray, labels: np.ndarray, op: OperatingPoint) -> dict[str, Any]:
    """What a rule earns on (K, C) takes: set metrics over the error classes plus the verdicts,
    and ``false_all_clear`` (takes with an error declared correct)."""
    pred, verdicts = decide_many(scores, op)
    y = np.asarray(labels)
    out = M.set_metrics(pred[:, 1:], y[:, 1:])
    v = np.array(verdicts)
    has_error = y[:, 1:].any(axis=1)
    out["verdicts"] = {k: int((v == k).sum()) for k in ("errors", "correct", "not_sure", "unsuitable")}
    out["false_all_clear"] = int(((v == "correct") & has_error).sum())
    n_correct = int((~has_error & (y[:, CORRECT] == 1)).sum())
    out["correct_takes"] = n_correct
    out["correct_recognised"] = int(((v == "correct") & ~has_error & (y[:, CORRECT] == 1)).sum())
    return out


def global_mark(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The one probability mark for every error class that maximises the micro F1 of plain
    thresholding over (K, C) calibrated ``probs`` (errors only); returns (mark, F1). A grid of
    0.01 steps: finer than any val split can tell apart."""
    p = np.asarray(probs)[:, 1:]
    y = np.asarray(labels)[:, 1:].astype(bool)
    best = (0.5, -1.0)
    for g in np.round(np.arange(0.01, 1.0, 0.01), 2):
        pred = p >= g
        tp = (pred & y).sum()
        f1 = 2 * tp / max(pred.sum() + y.sum(), 1)
        if f1 > best[1] + 1e-12:
            best = (float(g), float(f1))
    return best


def precision_mark(probs: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest probability mark for every error class at which plain thresholding of (K, C)
    calibrated ``probs`` reaches micro precision ``target`` (errors only): the most recall at
    that precision. Where no mark reaches it, the mark of the highest precision."""
    p = np.asarray(probs)[:, 1:]
    y = np.asarray(labels)[:, 1:].astype(bool)
    best = (0.99, -1.0)
    for g in np.round(np.arange(0.01, 1.0, 0.01), 2):
        pred = p >= g
        if not pred.any():
            break
        precision = (pred & y).sum() / pred.sum()
        if precision >= target:
            return float(g)
        if precision > best[1]:
            best = (float(g), float(precision))
    return best[0]


def fallback_point(head: str, cfg) -> OperatingPoint:
    """Without val: 0.5 on BCE probabilities; for similarities (no fixed scale) the z-score rule.
    Uncalibrated, so it never declares a take correct."""
    if head == "bce":
        return OperatingPoint(head, "fixed", np.full(NUM_CLASSES, cfg.bce_default_threshold),
                              None, cfg.correct_level, cfg.near_margin, cfg.clip_fallback_z)
    return OperatingPoint(head, "zscore", None, None, cfg.correct_level, cfg.near_margin,
                          cfg.clip_fallback_z)


def choose_operating_point(head: str, singles: Units, tune: Units | None, compare: Units | None,
                           cfg) -> tuple[OperatingPoint, dict[str, Any]]:
    """Fit the calibration, build every candidate rule's marks, compare them, keep the winner.

    ``singles``: the real val takes; ``tune``/``compare``: the two imagined draws (None or
    empty when val could not imagine). ``cfg``: the ``[eval]`` config (``calibration``,
    ``calibration_composite_share``, ``threshold_rule``, ``correct_level``, ``near_margin``).
    Returns the operating point and ``info`` (the comparison, the val F1 of each class, ...)."""
    fit = Units.join(singles, tune)
    w = np.ones(len(fit))
    if tune is not None and len(tune) and len(singles):
        # composites and singles each weigh their share, whatever their counts
        share = cfg.calibration_composite_share
        w[:len(singles)] = (1 - share) / len(singles)
        w[len(singles):] = share / len(tune)
        w *= len(fit)
    cal = fit_calibration(fit.scores, fit.labels, w, cfg.calibration, transform_for(head))
    fitted = np.array(cal.fitted)
    never = np.full(NUM_CLASSES, np.inf)
    candidates: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if tune is not None and len(tune):
        thr, f1 = M.choose_thresholds(cal(fit.scores), fit.labels, default=never)
        candidates["imagined_f1"] = (np.where(fitted, thr, np.inf), f1)
    if tune is not None and len(tune):
        g, _ = global_mark(cal(fit.scores), fit.labels)
        candidates["calibrated_global"] = (np.where(fitted, g, np.inf), None)
        if cfg.target_precision > 0:
            g = precision_mark(cal(fit.scores), fit.labels, cfg.target_precision)
            candidates["calibrated_precision"] = (np.where(fitted, g, np.inf), None)
    candidates["calibrated_half"] = (np.where(fitted, 0.5, np.inf), None)
    thr, f1 = M.choose_thresholds(cal(singles.scores), singles.labels, default=never)
    candidates["val_f1"] = (np.where(fitted, thr, np.inf), f1)
    judge = Units.join(singles, compare)
    rows = []
    for name in RULE_ORDER:
        if name not in candidates:
            continue
        op = OperatingPoint(head, name, candidates[name][0], cal, cfg.correct_level,
                            cfg.near_margin, cfg.clip_fallback_z)
        rows.append({"rule": name, "rule_text": M.THRESHOLD_RULES[name],
                     **rule_figures(judge.scores, judge.labels, op)})
    if cfg.threshold_rule == "auto":
        # with a target precision, only the rules that reach it on val compete (all of them
        # when none does: the best F1 then, and the report shows every rule's precision)
        pool = [r for r in rows if r["precision_micro"] >= cfg.target_precision] or rows
        if cfg.target_precision > 0 and len(pool) == len(rows) and not any(
                r["precision_micro"] >= cfg.target_precision for r in rows):
            log.warning("%s: no rule reaches precision %.2f on val; keeping the best F1", head,
                        cfg.target_precision)
        top = max(r["f1_micro"] for r in pool)
        chosen = next(r["rule"] for r in pool if r["f1_micro"] >= top - RULE_TIE)
    elif cfg.threshold_rule in candidates:
        chosen = cfg.threshold_rule
    else:
        chosen = "val_f1"
        log.warning("%s: rule %s needs imagined val composites; using val_f1", head,
                    cfg.threshold_rule)
    marks, f1 = candidates[chosen]
    op = OperatingPoint(head, chosen, marks, cal, cfg.correct_level, cfg.near_margin,
                        cfg.clip_fallback_z)
    info = {
        "compared_on": (f"{len(singles)} val single-class takes + {len(compare or [])} imagined "
                        f"composite takes (a second draw, not used to fit)"),
        "fitted_on": (f"{len(singles)} val single-class takes + {len(tune or [])} imagined "
                      f"composite takes"),
        "rows": rows, "chosen": chosen,
        "val_f1": None if f1 is None else [None if not np.isfinite(v) else float(v) for v in f1],
        "uncalibrated": [CLASSES[c] for c in np.flatnonzero(~fitted)],
    }
    return op, info
