"""The dataset plan: which takes exist, their split, label set and seed (no rendering).

A take is one recording of one participant doing one label set; it is seen by ``views``
cameras (front, left, right, high oblique), one video per view. The plan:

- train: participants p1..p(P-held_out), every single class (0..13) once;
- val:   the held-out participants, every single class once;
- test:  ``n_double`` + ``n_triple`` + ``n_quad`` composite label sets drawn from the taxonomy
         by ``seed``, each once, alternating between the held-out participants.

A take's seed comes from (seed, take_id), never from its position in the plan, so
``max_takes`` and the processing order change nothing in the videos.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.taxonomy import NUM_CLASSES, composite_label_sets
from synth.config import SynthConfig
from synth.render import derive_seed

__all__ = ["Take", "sample_composites", "plan_takes", "select_takes", "video_id"]


@dataclass(frozen=True)
class Take:
    """One recording: a participant (0-based index) doing one label set."""

    take_id: str
    participant: int
    split: str
    labels: tuple[int, ...]
    seed: int  # the take's seed; motion comes from it, the views add their own


def _take_id(participant: int, labels: tuple[int, ...]) -> str:
    return f"p{participant + 1}_c" + "-".join(f"{k:02d}" for k in labels)


def sample_composites(cfg: SynthConfig) -> list[tuple[int, ...]]:
    """The composite label sets of the test split, drawn from ``seed`` (sorted within a size)."""
    rng = np.random.default_rng(derive_seed(cfg.seed, "composites"))
    out: list[tuple[int, ...]] = []
    for size, n in ((2, cfg.n_double), (3, cfg.n_triple), (4, cfg.n_quad)):
        sets = composite_label_sets((size,))
        out.extend(sets[i] for i in sorted(rng.choice(len(sets), n, replace=False)))
    return out


def plan_takes(cfg: SynthConfig) -> list[Take]:
    """All takes of the dataset (before ``max_takes``), in train, val, test order."""
    n_train = cfg.participants - cfg.held_out
    held = list(range(n_train, cfg.participants))
    plan: list[tuple[int, str, tuple[int, ...]]] = []
    plan += [(p, "train", (k,)) for p in range(n_train) for k in range(NUM_CLASSES)]
    plan += [(p, "val", (k,)) for p in held for k in range(NUM_CLASSES)]
    plan += [(held[i % len(held)], "test", labels)
             for i, labels in enumerate(sample_composites(cfg))]
    takes = []
    for p, split, labels in plan:
        tid = _take_id(p, labels)
        takes.append(Take(tid, p, split, labels, derive_seed(cfg.seed, "take", tid)))
    return takes


def select_takes(takes: list[Take], max_takes: int) -> list[Take]:
    """The first ``max_takes`` takes taken round-robin over the splits (all when 0)."""
    if max_takes <= 0 or max_takes >= len(takes):
        return takes
    by_split: dict[str, list[Take]] = {}
    for t in takes:
        by_split.setdefault(t.split, []).append(t)
    queues = list(by_split.values())
    out: list[Take] = []
    i = 0
    while len(out) < max_takes:
        q = queues[i % len(queues)]
        if q:
            out.append(q.pop(0))
        i += 1
    return out


def video_id(take: Take, view: int) -> str:
    return f"{take.take_id}_v{view}"
