"""Tiny generated data for the finetune tests: a few 64x48 videos whose class is visible."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from pipeline.ffmpeg import ffmpeg_exe
from pipeline.manifest import VideoRecord, write_manifest


def class_frames(label: int, view: int, n: int = 16, h: int = 48, w: int = 64,
                 seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8: a noisy background and a square whose colour and direction of
    motion depend on ``label`` (so a network can learn the class in a few steps)."""
    rng = np.random.default_rng((seed, label, view))
    colours = [(250, 40, 40), (40, 250, 40), (40, 40, 250), (250, 250, 40)]
    out = rng.integers(0, 60, (n, h, w, 3), dtype=np.uint8)
    y0, x0 = int(rng.integers(4, h - 20)), int(rng.integers(4, w - 20))
    dy, dx = [(0, 2), (2, 0), (0, -2), (-2, 0)][label % 4]
    for i in range(n):
        y = int(np.clip(y0 + dy * i, 0, h - 14))
        x = int(np.clip(x0 + dx * i, 0, w - 14))
        out[i, y:y + 14, x:x + 14] = colours[label % 4]
    return out


def write_video(path: Path, frames: np.ndarray, fps: float = 25) -> Path:
    """Encode (N, H, W, 3) RGB frames losslessly (libx264rgb -qp 0)."""
    n, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-",
                    "-c:v", "libx264rgb", "-qp", "0", "-g", "8", str(path)],
                   input=frames.tobytes(), check=True)
    return path


def make_dataset(root: Path, classes: int = 4, train_views: int = 2, val_views: int = 1,
                 frames: int = 16, flow: bool = False) -> Path:
    """A manifest with ``classes`` x ``train_views`` train and ``classes`` x ``val_views`` val
    single-class videos (participants p1 / p2), optionally with flow videos; returns its path."""
    from extract.flow import compute_flow_video

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, views, person in (("train", train_views, "p1"), ("val", val_views, "p2")):
        for c in range(classes):
            take = f"{split}_c{c}"
            for v in range(1, views + 1):
                vid = f"{take}_v{v}"
                path = write_video(root / "videos" / f"{vid}.mp4",
                                   class_frames(c, v + (10 if split == "val" else 0), frames))
                flow_path = None
                if flow:
                    flow_path = root / "flow" / f"{vid}.mp4"
                    compute_flow_video(path, flow_path, "farneback", short_side=None)
                rows.append(VideoRecord(vid, path, take, v, person, split, (c,), flow_path))
    manifest = root / "manifest.csv"
    write_manifest(manifest, rows)
    return manifest
