"""Sentences that describe a label set, in three kinds, for the text side of CPR-CLIP.

- ``count``: how many errors there are;
- ``which``: which errors they are;
- ``correct``: what the trainee should correct (from :data:`pipeline.taxonomy.ADVICE`).

Each kind has ``NUM_WORDINGS`` wordings. Training draws one wording per kind at random; tests
always use wording 0. The correct action (class 0) has its own sentences. A prompt for a label
set is a tuple of one sentence per enabled kind, in :data:`KINDS` order; the text encoder side
(:mod:`train.text`) joins or averages them.

The sentences were written for this project.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

from pipeline.taxonomy import ADVICE, CLASSES, CORRECT, composite_label_sets, single_label_sets

KINDS: tuple[str, ...] = ("count", "which", "correct")
NUM_WORDINGS = 2  # at least two per kind, so training sees more than one phrasing
TEST_WORDING = 0

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}

# Wordings for the correct action, per kind.
_CORRECT_SENTENCES: dict[str, tuple[str, ...]] = {
    "count": ("There are no errors in these chest compressions.",
              "The trainee makes no mistake."),
    "which": ("Hands, arms, posture, depth and rhythm all look right.",
              "This is textbook CPR with nothing wrong."),
    "correct": ("Nothing needs to change; keep compressing like this.",
                "No correction is needed."),
}


def _name(k: int) -> str:
    return CLASSES[k].lower()


def _join(items: Sequence[str]) -> str:
    """``["a"] -> "a"``, ``["a", "b"] -> "a and b"``, ``["a", "b", "c"] -> "a, b and c"``."""
    items = list(items)
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _count_sentence(n: int, wording: int) -> str:
    if n == 1:
        return ("There is one error in these chest compressions.",
                "The trainee makes a single mistake.")[wording]
    word = _NUMBER_WORDS[n]
    return (f"There are {word} errors in these chest compressions.",
            f"The trainee makes {word} mistakes at the same time.")[wording]


def _which_sentence(labels: tuple[int, ...], wording: int) -> str:
    names = _join([_name(k) for k in labels])
    if len(labels) == 1:
        return (f"The error is {names}.", f"The trainee shows {names}.")[wording]
    return (f"The errors are {names}.", f"The trainee shows {names}.")[wording]


def _advice_sentence(labels: tuple[int, ...], wording: int) -> str:
    advice: list[str] = []
    for k in labels:  # two errors can share advice; say it once
        if ADVICE[k] not in advice:
            advice.append(ADVICE[k])
    todo = _join(advice)
    return (f"To fix this, {todo}.", f"The trainee should {todo}.")[wording]


def sentence(kind: str, labels: Sequence[int], wording: int) -> str:
    """One sentence of ``kind`` for the label set ``labels`` (sorted ids), wording index ``wording``."""
    if kind not in KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if not 0 <= wording < NUM_WORDINGS:
        raise ValueError(f"wording {wording} outside 0..{NUM_WORDINGS - 1}")
    labels = tuple(sorted(int(k) for k in labels))
    if labels == (CORRECT,):
        return _CORRECT_SENTENCES[kind][wording]
    if kind == "count":
        return _count_sentence(len(labels), wording)
    if kind == "which":
        return _which_sentence(labels, wording)
    return _advice_sentence(labels, wording)


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """Enabled kinds in canonical order; an unknown or empty list is an error."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown prompt kind(s) {', '.join(bad)}; valid kinds: {', '.join(KINDS)}")
    out = tuple(k for k in KINDS if k in kinds)
    if not out:
        raise ValueError(f"at least one prompt kind must be enabled (of {', '.join(KINDS)})")
    return out


def wording_combos(kinds: Sequence[str]) -> list[tuple[int, ...]]:
    """Every choice of one wording per enabled kind; index 0 is the fixed test wording."""
    return list(itertools.product(range(NUM_WORDINGS), repeat=len(check_kinds(kinds))))


def prompt(labels: Sequence[int], kinds: Sequence[str], combo: Sequence[int]) -> tuple[str, ...]:
    """The sentences for ``labels``: one per enabled kind, wording ``combo[i]`` for kind ``i``."""
    kinds = check_kinds(kinds)
    return tuple(sentence(k, labels, w) for k, w in zip(kinds, combo, strict=True))


def eval_prompt(labels: Sequence[int], kinds: Sequence[str]) -> tuple[str, ...]:
    return prompt(labels, kinds, (TEST_WORDING,) * len(check_kinds(kinds)))


def training_label_sets(sizes: Sequence[int] = (2, 3, 4)) -> list[tuple[int, ...]]:
    """Label sets the text bank covers: the 14 single classes, then valid composites."""
    return single_label_sets() + composite_label_sets(sizes)
