"""Tiny generated skeleton data for the skeleton stream's tests: a kneeling figure whose
compression depth, rate or arm angle depends on the class, seen by cameras that move and scale it.

A module of its own (not conftest.py), as finetune_helpers.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.manifest import VideoRecord, write_manifest
from pipeline.skeleton import KEYPOINTS, NUM_KEYPOINTS, Skeleton, write_skeleton

# A kneeling rescuer in a 160x120 frame (x right, y down), one (x, y) per keypoint.
_BASE = {
    "nose": (80, 22), "left_eye": (78, 20), "right_eye": (82, 20), "left_ear": (75, 21),
    "right_ear": (85, 21), "left_shoulder": (70, 35), "right_shoulder": (90, 35),
    "left_elbow": (73, 50), "right_elbow": (87, 50), "left_wrist": (77, 64),
    "right_wrist": (83, 64), "left_hip": (72, 72), "right_hip": (88, 72),
    "left_knee": (70, 92), "right_knee": (90, 92), "left_ankle": (60, 100),
    "right_ankle": (100, 100),
    "left_index_mcp": (78, 67), "left_pinky_mcp": (76, 67), "left_middle_tip": (79, 70),
    "right_index_mcp": (82, 67), "right_pinky_mcp": (84, 67), "right_middle_tip": (81, 70),
}
BASE = np.array([_BASE[k] for k in KEYPOINTS], np.float32)  # (V, 2)
UPPER = np.array([not k.endswith(("hip", "knee", "ankle")) for k in KEYPOINTS])
ARMS = np.array([any(p in k for p in ("elbow", "wrist", "mcp", "tip")) for k in KEYPOINTS])


def class_keypoints(label: int, view: int, frames: int = 40, fps: float = 25.0,
                    seed: int = 0) -> np.ndarray:
    """(frames, 23, 3) pixel keypoints + scores of class ``label`` (0-3): 0 correct, 1 shallow,
    2 slow, 3 tilted arms; the view moves and scales the figure; noise and a missed joint."""
    rng = np.random.default_rng((seed, label, view))
    depth, rate, tilt = 8.0, 110.0, 0.0
    if label % 4 == 1:
        depth = 2.5
    elif label % 4 == 2:
        rate = 60.0
    elif label % 4 == 3:
        tilt = 12.0
    t = np.arange(frames) / fps
    wave = 0.5 - 0.5 * np.cos(2 * np.pi * (rate / 60 * t + rng.uniform()))
    kp = np.zeros((frames, NUM_KEYPOINTS, 3), np.float32)
    kp[..., :2] = BASE
    kp[:, UPPER, 1] += (depth * wave)[:, None]
    kp[:, ARMS, 0] += tilt
    scale, shift = rng.uniform(0.8, 1.2), rng.uniform(-15, 15, 2)
    kp[..., :2] = (kp[..., :2] - 80) * scale + 80 + shift + rng.normal(0, 0.4, (frames, NUM_KEYPOINTS, 2))
    kp[..., 2] = rng.uniform(0.6, 1.0, (frames, NUM_KEYPOINTS))
    kp[:, KEYPOINTS.index("left_ear")] = 0  # never found
    return kp


def write_class_skeleton(path: Path, label: int, view: int, frames: int = 40,
                         seed: int = 0) -> Path:
    return write_skeleton(path, Skeleton(class_keypoints(label, view, frames, seed=seed),
                                         160, 120, 25.0, "test-synth"))


def make_skeleton_dataset(root: Path, classes: int = 4, train_views: int = 4, val_views: int = 1,
                          test_takes: int = 2, frames: int = 40) -> Path:
    """A manifest whose rows have skeleton files (and placeholder video paths, which the
    skeleton stream never opens): ``classes`` x ``train_views`` train singles (p1), x
    ``val_views`` val singles (p2), and ``test_takes`` two-view composite takes (p3)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []

    def add(vid, take, view, person, split, labels):
        video = root / "videos" / f"{vid}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(b"")  # never decoded by the skeleton stream
        sk = write_class_skeleton(root / "skeleton" / f"{vid}.npz", labels[0], view + 10 * len(rows),
                                  frames)
        rows.append(VideoRecord(vid, video, take, view, person, split, labels, skeleton=sk))

    for split, views, person in (("train", train_views, "p1"), ("val", val_views, "p2")):
        for c in range(classes):
            for v in range(1, views + 1):
                add(f"{split}_c{c}_v{v}", f"{split}_c{c}", v, person, split, (c,))
    for k in range(test_takes):
        for v in (1, 2):
            add(f"test{k}_v{v}", f"test{k}", v, "p3", "test", (1, 4 + k))
    manifest = root / "manifest.csv"
    write_manifest(manifest, rows)
    return manifest
