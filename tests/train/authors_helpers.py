"""A tiny store with the shape of the real thing, for the authors'-format tests: takes of two
views that share their labels, single-class takes (train, one in five held out as val) and
composite-error takes (test). A clip is its label set's mean class vector plus noise, so the
models can learn; writing goes through pipeline.features.write_feature_set."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.features import FeatureRecipe, FeatureSet, feature_path, write_feature_set
from pipeline.taxonomy import NUM_CLASSES, composite_label_sets, multi_hot


def make_two_view_store(features_dir: Path, *, dataset: str = "orig", backbone: str = "toy",
                        segments: int = 4, dim: int = 16, train_takes: int = 4,
                        val_takes: int = 1, test_takes: int = 40, noise: float = 0.6,
                        seed: int = 0) -> Path:
    """features/<dataset>/<backbone>-rgb-<segments>seg.h5 with 2 views per take:
    14 x (train_takes + val_takes) single-class takes and ``test_takes`` composite takes."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((NUM_CLASSES, dim)).astype(np.float32)
    comps = composite_label_sets()
    takes = []  # (take, split, label set, participant)
    for k in range(NUM_CLASSES):
        for j in range(train_takes + val_takes):
            held = j < val_takes
            takes.append((f"s{k:02d}_{j}", "val" if held else "train", (k,),
                          "p5" if held else f"p{1 + j % 4}"))
    for j in range(test_takes):
        takes.append((f"c{j:03d}", "test", comps[int(rng.integers(len(comps)))], "p6"))
    cols: dict[str, list] = {k: [] for k in ("ids", "takes", "views", "parts", "splits",
                                             "labels", "feats")}
    for take, split, labels, part in takes:
        centre = means[list(labels)].mean(axis=0)
        for view in (1, 2):
            cols["ids"].append(f"{take}_v{view}")
            cols["takes"].append(take)
            cols["views"].append(view)
            cols["parts"].append(part)
            cols["splits"].append(split)
            cols["labels"].append(multi_hot(labels))
            cols["feats"].append(centre[None] + noise * rng.standard_normal((segments, dim)))
    path = feature_path(features_dir, dataset, backbone, "rgb", segments)
    rows = FeatureSet(path, np.array(cols["ids"]), np.array(cols["takes"]), np.array(cols["views"]),
                      np.array(cols["parts"]), np.array(cols["splits"]), np.stack(cols["labels"]),
                      np.stack(cols["feats"]).astype(np.float32))
    recipe = FeatureRecipe(backbone=backbone, modality="rgb", segments=segments, feature_dim=dim,
                           init="checkpoint", checkpoint_sha256="0" * 64)
    return write_feature_set(path, rows, recipe)
