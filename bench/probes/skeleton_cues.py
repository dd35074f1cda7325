"""Probes behind docs/skeleton.md ("Depth from the hands") and docs/results.md ("How far a
single frame can go"): measurements on a synth dataset's keypoint files, not shipped features.

    python bench/probes/skeleton_cues.py depth  [data/synthetic]   # depth cues per view
    python bench/probes/skeleton_cues.py frames [data/synthetic]   # single-frame keypoint ceiling

``depth``: for each video, the vertical amplitude of the six hand points (score-weighted) by
the periodic fit of extract/kinematics.py, in image heights, and the same in torso lengths;
prints its correlation with the true depth per view (depth-only training clips; composite test
clips) and the ROC AUC of the two depth classes on the composite clips.
``frames``: 8 frames per single-class video; the frame's keypoints (torso-relative and
image-relative positions, scores, the view) from ``skeleton_clean/`` (exact) and ``skeleton/``
(synth's noisy copy) -> logistic regression and boosted trees; top-1 / top-5 on the held-out
people (split val).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from extract.kinematics import periodic_amplitude  # noqa: E402
from pipeline.skeleton import KEYPOINTS, read_skeleton  # noqa: E402

K = {n: i for i, n in enumerate(KEYPOINTS)}
HAND = ["left_wrist", "right_wrist", "left_index_mcp", "left_pinky_mcp", "right_index_mcp",
        "right_pinky_mcp"]


def rows(root: Path) -> list[dict]:
    with open(root / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def group(kp: np.ndarray, names: list[str]) -> np.ndarray:
    idx = [K[n] for n in names]
    w = np.where(kp[:, idx, 2] > 0.2, kp[:, idx, 2], 0.0)
    xy = (kp[:, idx, :2] * w[..., None]).sum(1) / np.maximum(w.sum(1), 1e-9)[:, None]
    ok, t = w.sum(1) > 0, np.arange(len(xy))
    return np.stack([np.interp(t, t[ok], xy[ok, j]) for j in (0, 1)], 1) if ok.sum() > 1 else xy


def amplitude(v: np.ndarray, fps: float) -> float:
    n = len(v)
    spec = np.abs(np.fft.rfft((v - v.mean()) * np.hanning(n), 1024))
    fr = np.fft.rfftfreq(1024, 1 / fps)
    band = (fr >= 0.6) & (fr < 3.0)
    return periodic_amplitude(v, fps, float(fr[band][np.argmax(spec[band])]))


def depth(root: Path) -> None:
    from sklearn.metrics import roc_auc_score

    out = []
    for r in rows(root):
        sk = read_skeleton(root / r["skeleton"])
        kp = sk.keypoints.astype(np.float64)
        a = amplitude(group(kp, HAND)[:, 1], sk.fps)
        torso = np.median(np.linalg.norm(group(kp, ["left_shoulder", "right_shoulder"])
                                         - group(kp, ["left_hip", "right_hip"]), axis=1))
        out.append((int(r["view"]), r["split"], {int(x) for x in r["labels"].split(";")},
                    float(r["depth"]), a / sk.height, a / max(torso, 1e-9)))
    for name, col in (("image heights", 4), ("torso lengths", 5)):
        for split in ("train", "test"):
            cs = []
            for v in (1, 2, 3, 4):
                sel = [o for o in out if o[0] == v and o[1] == split
                       and (split == "test" or o[2] <= {0, 10, 12})]
                cs.append(np.corrcoef([o[col] for o in sel], [o[3] for o in sel])[0, 1])
            print(f"{name:14s} {split:5s} corr per view: " + " ".join(f"{c:.2f}" for c in cs))
        test = [o for o in out if o[1] == "test"]
        for k, sign in ((10, -1), (12, 1)):
            aucs = [roc_auc_score([k in o[2] for o in test if o[0] == v],
                                  [sign * o[col] for o in test if o[0] == v]) for v in (1, 2, 3, 4)]
            print(f"{name:14s} test AUC class {k} per view: " + " ".join(f"{a:.2f}" for a in aucs))


def frames(root: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    single = [r for r in rows(root) if ";" not in r["labels"]]
    for sub in ("skeleton_clean", "skeleton"):
        X, y, split = [], [], []
        for r in single:
            sk = read_skeleton(root / r["skeleton"].replace("skeleton/", f"{sub}/", 1))
            kp = sk.keypoints.astype(np.float64)
            for f in np.linspace(0, len(kp) - 1, 8).round().astype(int):
                k = kp[f]
                sh = k[[K["left_shoulder"], K["right_shoulder"]], :2].mean(0)
                hp = k[[K["left_hip"], K["right_hip"]], :2].mean(0)
                length = max(float(np.linalg.norm(sh - hp)), 1.0)
                X.append(np.concatenate([((k[:, :2] - (sh + hp) / 2) / length).ravel(),
                                         (k[:, :2] / [sk.width, sk.height]).ravel(), k[:, 2],
                                         np.eye(4)[int(r["view"]) - 1]]))
                y.append(int(r["labels"]))
                split.append(r["split"])
        X, y, split = np.array(X), np.array(y), np.array(split)
        tr, va = split == "train", split == "val"
        sc = StandardScaler().fit(X[tr])
        for name, clf in (("logistic regression C=0.1", LogisticRegression(C=0.1, max_iter=5000)),
                          ("logistic regression C=1", LogisticRegression(C=1.0, max_iter=5000)),
                          ("boosted trees", HistGradientBoostingClassifier(max_iter=200))):
            p = clf.fit(sc.transform(X[tr]), y[tr]).predict_proba(sc.transform(X[va]))
            top5 = np.argsort(-p, axis=1)[:, :5]
            print(f"{sub:15s} {name:27s} top-1 {np.mean(p.argmax(1) == y[va]):.3f} "
                  f"top-5 {np.mean([t in row for t, row in zip(y[va], top5)]):.3f}")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "depth"
    root = Path(sys.argv[2] if len(sys.argv) > 2 else "data/synthetic")
    {"depth": depth, "frames": frames}[what](root)
