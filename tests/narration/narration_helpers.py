"""Tiny generated data for the narration tests: a manifest (no videos: training reads
features), narration files in the documented layout, and feature files written as the extract
stage writes them (ShardWriter, then consolidate).

Each class k has a feature mean; a video is its class mean plus noise, per segment. The toy
narrations describe class k with words of its class prompt (train.prompts), so a projection
trained on them with the bag-of-words test encoder must recognise held-out videos zero-shot.
This is the machinery check; the honest transfer (vocabulary of synth/narration.py, MiniLM)
is measured on the demo (docs/narration.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.features import ShardWriter, consolidate, feature_path
from pipeline.manifest import VideoRecord, write_manifest
from pipeline.taxonomy import ADVICE, CLASSES, composite_label_sets, multi_hot

DATASET, BACKBONE = "tiny", "toy"
SEGMENTS = 4


def _class_words(k: int) -> str:
    return f"{CLASSES[k].lower()}, {ADVICE[k]}"


# classes whose prompts differ in every kind (1 and 2 share their advice, 7 and 8 too)
TOY_CLASSES = (0, 1, 3, 4, 5, 6, 9, 10)


def make_dataset(root: Path, classes: tuple[int, ...] = TOY_CLASSES, train_people: int = 2,
                 views: int = 2,
                 noise: float = 0.3, dim: int = 24, seed: int = 0, n_test: int = 4) -> dict:
    """``root/tiny/manifest.csv`` + ``narration/`` and ``root/features/tiny/toy-rgb-4seg.h5``.
    Train: ``train_people`` people x ``classes`` singles; val: one more person; test: composite
    takes of that person made of ``classes``. Returns the paths as overrides."""
    rng = np.random.default_rng(seed)
    ds = root / DATASET
    nar = ds / "narration"
    (nar / "sessions").mkdir(parents=True, exist_ok=True)
    means = rng.standard_normal((14, dim)).astype(np.float32)
    takes: list[tuple[str, str, str, tuple[int, ...]]] = []
    for p in range(train_people + 1):
        split = "train" if p < train_people else "val"
        for k in classes:
            takes.append((f"p{p + 1}_c{k:02d}", f"p{p + 1}", split, (k,)))
    comps = [s for s in composite_label_sets((2,)) if set(s) <= set(classes)][:n_test]
    for s in comps:
        takes.append((f"p{train_people + 1}_c" + "-".join(f"{k:02d}" for k in s),
                      f"p{train_people + 1}", "test", s))
    records, rows = [], []
    sessions: dict[str, list[str]] = {}
    for tid, person, split, labels in takes:
        sessions.setdefault(person, []).append(tid)
        words = [_class_words(k) for k in labels]
        take_file = {"schema": "cprclip-narration-1", "take_id": tid, "session": person,
                     "duration": 3.2, "keystep": "compressions with " + " and ".join(words),
                     "session_file": f"sessions/{person}.json",
                     "lines": [{"start": 0.1, "end": 1.5, "text": "look " + words[0]},
                               {"start": 1.7, "end": 3.2, "text": "again " + words[-1]}]}
        (nar / f"{tid}.json").write_text(json.dumps(take_file))
        for v in range(1, views + 1):
            vid = f"{tid}_v{v}"
            records.append(VideoRecord(vid, ds / "videos" / f"{vid}.mp4", tid, v, person, split,
                                       labels, narration=nar / f"{tid}.json"))
            x = means[list(labels)].mean(0)[None] + noise * rng.standard_normal((SEGMENTS, dim))
            rows.append((vid, tid, v, person, split, multi_hot(labels), x.astype(np.float32)))
    for person, tids in sessions.items():
        (nar / "sessions" / f"{person}.json").write_text(json.dumps(
            {"schema": "cprclip-narration-1", "session": person, "takes": tids,
             "abstract": f"session of {person}: {len(tids)} rounds"}))
    write_manifest(ds / "manifest.csv", records)
    path = feature_path(root / "features", DATASET, BACKBONE, "rgb", SEGMENTS)
    w = ShardWriter(path, {"backbone": BACKBONE, "modality": "rgb", "segments": SEGMENTS,
                           "checkpoint_sha256": "0" * 64, "init": "random"}, rows_per_shard=40)
    for r in rows:
        w.add(*r)
    w.close()
    consolidate(path)
    return {"dataset": DATASET, "manifest": str(ds / "manifest.csv"),
            "features_dir": str(root / "features"), "backbone": BACKBONE, "segments": SEGMENTS,
            "text_encoder": "test_hash", "runs_dir": str(root / "runs")}


def overrides(paths: dict, **kw) -> list[str]:
    """``key=value`` strings for ``[narration]``: the dataset's paths plus ``kw``."""
    return [f"{k}={v}" for k, v in {**paths, **kw}.items()]
