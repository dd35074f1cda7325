"""Tiny feature files for the train tests: class-dependent Gaussian features, so learning is possible.

A module of its own (not conftest.py): ``from conftest import X`` gets whichever folder's
conftest pytest imported last when the whole suite runs.

Single-class clips are ``mean[k] + noise``; a composite clip is the average of its errors'
means plus noise (what imagination approximates). Files are written the way the extract stage
writes them: ShardWriter, then consolidate.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.features import ShardWriter, consolidate, feature_path
from pipeline.taxonomy import NUM_CLASSES, composite_label_sets, multi_hot

DATASET, BACKBONE = "tiny", "toy"


def make_features(features_dir: Path, *, segments: int = 4, dims: dict[str, int] | None = None,
                  train_per_class: int = 4, val_per_class: int = 2, n_test: int = 24,
                  noise: float = 0.5, seed: int = 0,
                  backbones: dict[str, str] | None = None, paired_test: bool = False) -> Path:
    """``backbones``: {modality: backbone name of its file}, default BACKBONE for each.
    ``paired_test``: the two views of a test take share its label set (what `cprclip eval`
    checks); by default each test row draws its own."""
    dims = dims or {"rgb": 16, "flow": 8}
    backbones = backbones or {}
    rng = np.random.default_rng(seed)
    means = {m: rng.standard_normal((NUM_CLASSES, d)).astype(np.float32) for m, d in dims.items()}
    rows = []  # (video_id, take, view, participant, split, label set)
    i = 0
    for k in range(NUM_CLASSES):
        for j in range(train_per_class):
            rows.append((f"v{i:04d}", f"t{i // 2:04d}", 1 + j % 2, f"p{1 + j % 2}", "train", (k,)))
            i += 1
        for j in range(val_per_class):
            rows.append((f"v{i:04d}", f"t{i // 2:04d}", 1 + j % 2, "p5", "val", (k,)))
            i += 1
    comps = composite_label_sets()
    for j in range(n_test):
        if not (paired_test and i % 2):
            labels = comps[int(rng.integers(len(comps)))]
        rows.append((f"v{i:04d}", f"t{i // 2:04d}", 1 + j % 2, "p6", "test", labels))
        i += 1
    for m, d in dims.items():
        name = backbones.get(m, BACKBONE)
        path = feature_path(features_dir, DATASET, name, m, segments)
        w = ShardWriter(path, {"backbone": name, "modality": m, "segments": segments,
                               "checkpoint_sha256": "0" * 64, "init": "random"}, rows_per_shard=40)
        for vid, take, view, part, split, labels in rows:
            centre = means[m][list(labels)].mean(axis=0)
            x = centre[None, :] + noise * rng.standard_normal((segments, d)).astype(np.float32)
            w.add(vid, take, view, part, split, multi_hot(labels), x)
        w.close()
        consolidate(path)
    return features_dir
