"""Probes behind docs/skeleton.md ("Depth from the hands") and docs/results.md ("How far a
single frame can go"): measurements on a synth dataset's keypoint files, not shipped features.

    python bench/probes/skeleton_cues.py depth  [data/synthetic]   # depth cues per view
    python bench/probes/skeleton_cues.py frames [data/synthetic]   # single-frame keypoint ceiling
    python bench/probes/skeleton_cues.py store FILE.h5               # the same cues in a feature file

``depth``: for each video, the vertical amplitude of the six hand points (score-weighted) by
the periodic fit of extract/kinematics.py, in image heights, and the same in torso lengths;
prints its correlation with the true depth per view (depth-only training clips; composite test
clips) and the ROC AUC of the two depth classes on the composite clips.
``frames``: 8 frames per single-class video; the frame's keypoints (torso-relative and
image-relative positions, scores, the view) from ``skeleton_clean/`` (exact) and ``skeleton/``
(synth's noisy copy) -> logistic regression and boosted trees; top-1 / top-5 on the held-out
people (split val).
``store``: a skeleton feature file with kinematic descriptors (``cprclip extract``): the hand
points' vertical periodic amplitude in image heights against the two depth classes on the
composite test clips (ROC AUC per view and pooled, AP pooled, and per take with each view
standardised by its training clips), and per class the single descriptor with the best test
AUC after per-view standardisation, with its AP.
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


def store(path: Path) -> None:
    import h5py
    from sklearn.metrics import average_precision_score, roc_auc_score

    from extract.kinematics import BANDS, DIM, GROUPS, PER_SIGNAL
    from pipeline.taxonomy import CLASSES

    with h5py.File(path, "r") as f:
        x = f["features"][:, 0, -DIM:].astype(np.float64)  # the descriptors: same in every segment
        y, view = f["labels"][:], f["view"][:]
        split, take = f["split"][:].astype(str), f["take_id"][:].astype(str)
    train, test = split == "train", split == "test"
    z = x.copy()  # standardised per view with the training clips
    for v in np.unique(view):
        ref = train & (view == v)
        sd = x[ref].std(axis=0)
        z[view == v] = (x[view == v] - x[ref].mean(axis=0)) / np.where(sd > 1e-9, sd, 1.0)
    names = list(GROUPS)
    col = (2 * names.index("hand_points") + 1) * PER_SIGNAL + 4 + BANDS + 3  # log, image heights
    views = np.unique(view[test])
    for k, sign in ((10, -1), (12, 1)):
        a = sign * x[:, col]
        per_view = [roc_auc_score(y[test & (view == v), k], a[test & (view == v)]) for v in views]
        takes = np.unique(take[test])
        fused = np.array([sign * z[test & (take == t), col].mean() for t in takes])
        yt = np.array([y[test & (take == t), k][0] for t in takes])
        print(f"{CLASSES[k]}: AUC per view " + " ".join(f"{u:.2f}" for u in per_view)
              + f" | pooled AUC {roc_auc_score(y[test, k], a[test]):.2f}"
              f" AP {average_precision_score(y[test, k], a[test]):.2f}"
              f" | per take, views standardised: AUC {roc_auc_score(yt, fused):.2f}"
              f" AP {average_precision_score(yt, fused):.2f}")
    keys = (["amp", "log amp", "sd", "rate"] + [f"band {i}" for i in range(BANDS)]
            + ["pp", "log pp", "pp img", "log pp img", "where", "where img"])
    for k in range(1, len(CLASSES)):
        best = (0.0, 0.0, "", 0)
        for c in range(DIM):
            if z[test, c].std() < 1e-9:
                continue
            auc = roc_auc_score(y[test, k], z[test, c])
            s = 1.0 if auc >= 0.5 else -1.0
            if max(auc, 1 - auc) > best[0]:
                g, r = divmod(c, 2 * PER_SIGNAL)
                best = (max(auc, 1 - auc), average_precision_score(y[test, k], s * z[test, c]),
                        f"{names[g]} {'xy'[r // PER_SIGNAL]} {keys[r % PER_SIGNAL]}", c)
        c = best[3]
        per_view = [roc_auc_score(y[test & (view == v), k], z[test & (view == v), c]) for v in views]
        print(f"{CLASSES[k]:28s} best single descriptor: {best[2]:28s} AUC {best[0]:.3f} "
              f"AP {best[1]:.2f}; AUC per view " + " ".join(f"{max(u, 1 - u):.2f}" for u in per_view))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "depth"
    arg = Path(sys.argv[2] if len(sys.argv) > 2 else "data/synthetic")
    {"depth": depth, "frames": frames, "store": store}[what](arg)
