"""The decision rules: from scores to the error set a user is told about.

``cprclip eval`` and the assistant (``cprclip predict`` / ``cprclip serve``) both import them
from here, so the threshold-free fallback the report measures is the one the assistant applies.
:func:`decide` adds what only a single take needs: at most one error per exclusive group and at
most 4. Pure numpy: arrays in, arrays out.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.taxonomy import CLASSES, CORRECT, EXCLUSIVE_GROUPS, MAX_COMPOSITE


def zscore_predictions(scores: np.ndarray, z: float) -> np.ndarray:
    """The threshold-free rule for similarity scores: a class is predicted when its score is at
    least ``z`` standard deviations above the mean of the clip's C scores, and the top class is
    always predicted. (N, C) -> (N, C) 0/1."""
    scores = np.asarray(scores, dtype=np.float64)
    mu = scores.mean(axis=1, keepdims=True)
    sd = scores.std(axis=1, keepdims=True) + 1e-12
    pred = (scores - mu) / sd >= z
    pred[np.arange(len(scores)), scores.argmax(axis=1)] = True
    return pred.astype(np.uint8)


def decide(scores: np.ndarray, thresholds: np.ndarray | None, clip_z: float = 1.0
           ) -> tuple[list[int], bool, list[dict[str, Any]]]:
    """Detected error ids (best first), whether "Correct" was detected, and what was dropped.

    ``scores`` (C,) fused over views; ``thresholds`` (C,), or None for the z-score rule of
    :func:`zscore_predictions`. Margin = score - threshold (or the z-score under the
    threshold-free rule). Among detections, one error per exclusive group survives (the largest
    margin) and at most 4 errors (the largest margins), because no real take has more.
    """
    s = np.asarray(scores, dtype=np.float64)
    if thresholds is None:
        detected = zscore_predictions(s[None], clip_z)[0].astype(bool)
        margin = (s - s.mean()) / (s.std() + 1e-12)
    else:
        thr = np.asarray(thresholds, dtype=np.float64)
        detected = s >= thr
        margin = s - thr
    correct = bool(detected[CORRECT])
    errors = sorted((int(c) for c in np.flatnonzero(detected) if c != CORRECT),
                    key=lambda c: -margin[c])
    kept: list[int] = []
    dropped: list[dict[str, Any]] = []
    for c in errors:
        clash = next((k for k in kept for g in EXCLUSIVE_GROUPS.values() if c in g and k in g), None)
        if clash is not None:
            group = next(n for n, g in EXCLUSIVE_GROUPS.items() if c in g)
            dropped.append({"id": c, "name": CLASSES[c],
                            "reason": f"excludes {CLASSES[clash]} ({group}), which scored higher"})
        elif len(kept) >= MAX_COMPOSITE:
            dropped.append({"id": c, "name": CLASSES[c],
                            "reason": f"at most {MAX_COMPOSITE} errors occur together"})
        else:
            kept.append(c)
    return kept, correct, dropped
