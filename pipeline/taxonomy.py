"""The CPR-Coach label taxonomy: 14 single classes, advice, exclusive groups, composite sets.

Labels are class ids 0..13; a label *set* is a sorted tuple of ids; a multi-hot vector has
shape (C,) with C = 14. Class 0 ("Correct") never appears inside a composite set.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np

CLASSES: tuple[str, ...] = (
    "Correct",
    "Overlap Hands",
    "Clenching Hands",
    "Single Hand",
    "Bending Arms",
    "Tilting Arms",
    "Jump Pressing",
    "Squatting",
    "Standing",
    "Wrong Position",
    "Insufficient Pressing",
    "Slow Frequency",
    "Excessive Pressing",
    "Random Position Pressing",
)
NUM_CLASSES = len(CLASSES)
CORRECT = 0
ERROR_IDS: tuple[int, ...] = tuple(range(1, NUM_CLASSES))

# What a trainer tells the trainee for each class (docs/design.md, "Label taxonomy": facts
# from CPR-Coach).
ADVICE: tuple[str, ...] = (
    "nothing",
    "interlock the fingers",
    "interlock the fingers",
    "press with both hands",
    "keep the arms straight",
    "keep the arms vertical",
    "stop jumping while pressing",
    "kneel",
    "kneel",
    "move the hands to the right position",
    "press deeper",
    "press faster",
    "press less deep",
    "keep the hands in one place",
)

# Each group describes one physical quantity, so at most one member can be wrong at a time.
EXCLUSIVE_GROUPS: dict[str, frozenset[int]] = {
    "hand form": frozenset({1, 2, 3}),
    "posture": frozenset({7, 8}),
    "depth": frozenset({10, 12}),
    "hand location": frozenset({9, 13}),
}

MIN_COMPOSITE, MAX_COMPOSITE = 2, 4


class LabelError(ValueError):
    """A label or label set that the taxonomy does not allow."""


def label_set_problem(labels: Iterable[int]) -> str | None:
    """Return why ``labels`` is not a valid label set, or None when it is valid.

    Valid sets are ``(0,)``, a single error ``(k,)``, or 2..4 distinct errors with at most one
    member of each exclusive group.
    """
    labels = list(labels)
    if not labels:
        return "empty label set"
    for k in labels:
        if not isinstance(k, (int, np.integer)) or not 0 <= int(k) < NUM_CLASSES:
            return f"unknown class {k!r} (valid ids are 0..{NUM_CLASSES - 1})"
    if len(set(labels)) != len(labels):
        return f"repeated class in {sorted(labels)}"
    if len(labels) == 1:
        return None
    if CORRECT in labels:
        return f"class 0 (Correct) cannot be combined with errors: {sorted(labels)}"
    if len(labels) > MAX_COMPOSITE:
        return f"{len(labels)} errors in {sorted(labels)}; at most {MAX_COMPOSITE} can co-occur"
    for name, group in EXCLUSIVE_GROUPS.items():
        clash = sorted(group.intersection(labels))
        if len(clash) > 1:
            names = " and ".join(CLASSES[k] for k in clash)
            return f"{names} cannot occur together ({name})"
    return None


def is_valid_label_set(labels: Iterable[int]) -> bool:
    return label_set_problem(labels) is None


def check_label_set(labels: Iterable[int]) -> tuple[int, ...]:
    """Return ``labels`` as a sorted tuple, or raise LabelError saying what is wrong."""
    labels = list(labels)
    problem = label_set_problem(labels)
    if problem is not None:
        raise LabelError(problem)
    return tuple(sorted(int(k) for k in labels))


def composite_label_sets(sizes: Iterable[int] = (2, 3, 4)) -> list[tuple[int, ...]]:
    """All valid composite sets with the given numbers of errors, in lexicographic order."""
    out: list[tuple[int, ...]] = []
    for n in sizes:
        if not MIN_COMPOSITE <= n <= MAX_COMPOSITE:
            raise LabelError(f"composite size {n} outside {MIN_COMPOSITE}..{MAX_COMPOSITE}")
        out.extend(c for c in itertools.combinations(ERROR_IDS, n) if is_valid_label_set(c))
    return out


def single_label_sets() -> list[tuple[int, ...]]:
    return [(k,) for k in range(NUM_CLASSES)]


def multi_hot(labels: Iterable[int]) -> np.ndarray:
    """(C,) uint8 vector with ones at ``labels``."""
    v = np.zeros(NUM_CLASSES, dtype=np.uint8)
    v[list(labels)] = 1
    return v


def from_multi_hot(vec: np.ndarray) -> tuple[int, ...]:
    return tuple(int(k) for k in np.flatnonzero(np.asarray(vec) > 0))


def parse_labels(text: str) -> tuple[int, ...]:
    """Parse the manifest form ``"3;10"`` into ``(3, 10)``; raises LabelError."""
    parts = [p.strip() for p in str(text).split(";") if p.strip()]
    try:
        ids = [int(p) for p in parts]
    except ValueError as e:
        raise LabelError(f"labels {text!r} are not integers joined by ';'") from e
    return check_label_set(ids)


def format_labels(labels: Iterable[int]) -> str:
    return ";".join(str(int(k)) for k in sorted(labels))
