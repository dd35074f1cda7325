"""The hand-made baseline on a dataset's test split, scored as `cprclip eval` scores models.

    .venv/bin/python bench/framestats_baseline.py data/synthetic/manifest.csv [--workers 2]

A logistic regression on frame statistics (evaluate/baseline.py) is trained on the
single-class train videos (one view per video, each video a sample) and its class
probabilities are scored on the composite test videos: mAP over the error classes per video
(``skip`` policy, as the eval stage) and with the views of a take averaged. Prints one line per
figure; the results tables of docs/results.md quote it as the floor.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluate import metrics as M  # noqa: E402
from evaluate.baseline import fit_baseline, frame_statistics, read_small_frames  # noqa: E402
from pipeline.manifest import load_manifest  # noqa: E402
from pipeline.taxonomy import NUM_CLASSES, multi_hot  # noqa: E402


def _stats(path: str) -> np.ndarray:
    return frame_statistics(read_small_frames(path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    recs = load_manifest(a.manifest)
    train = [r for r in recs if r.split == "train" and len(r.labels) == 1]
    test = [r for r in recs if r.split == "test"]
    if not train or not test:
        print(f"{a.manifest}: needs single-class train rows and test rows "
              f"({len(train)} train, {len(test)} test)", file=sys.stderr)
        return 2
    with ProcessPoolExecutor(a.workers) as ex:
        x_tr = np.stack(list(ex.map(_stats, [str(r.path) for r in train], chunksize=8)))
        x_te = np.stack(list(ex.map(_stats, [str(r.path) for r in test], chunksize=8)))
    clf = fit_baseline(x_tr, np.array([r.labels[0] for r in train]), a.seed)
    proba = np.zeros((len(test), NUM_CLASSES))
    proba[:, clf.classes_] = clf.predict_proba(x_te)
    y = np.stack([multi_hot(r.labels) for r in test])
    video = M.mean_average_precision(proba, y, "skip").value
    fused = M.fuse_views(proba, y, np.array([r.take_id for r in test]), "mean")
    take = M.mean_average_precision(fused.scores, fused.labels, "skip").value
    print(f"frame-statistics baseline on {a.manifest}: {len(train)} train videos, "
          f"{len(test)} test videos ({len(fused.scores)} takes)")
    print(f"mAP per video {100 * video:.1f}, fused-mean {100 * take:.1f} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
