"""Tiny generated data for the frames tests: short lossless videos whose class is visible in
every frame (a coloured square at a class-dependent place), and a manifest of them."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from pipeline.ffmpeg import ffmpeg_exe
from pipeline.manifest import VideoRecord, write_manifest

COLOURS = [(250, 40, 40), (40, 250, 40), (40, 40, 250), (250, 250, 40)]


def class_frames(label: int, seed: int, n: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """(n, h, w, 3) uint8: dark noise and a 16-px square whose colour and corner follow
    ``label``, jittered by a few pixels per frame."""
    rng = np.random.default_rng((seed, label))
    out = rng.integers(0, 50, (n, h, w, 3), dtype=np.uint8)
    y0, x0 = [(2, 2), (2, w - 18), (h - 18, 2), (h - 18, w - 18)][label % 4]
    for i in range(n):
        y, x = y0 + int(rng.integers(0, 3)), x0 - int(rng.integers(0, 3)) + 1
        out[i, y:y + 16, x:x + 16] = COLOURS[label % 4]
    return out


def write_video(path: Path, frames: np.ndarray, fps: float = 25) -> Path:
    """Encode (N, H, W, 3) RGB frames losslessly (libx264rgb -qp 0)."""
    n, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-",
                    "-c:v", "libx264rgb", "-qp", "0", "-g", "4", str(path)],
                   input=frames.tobytes(), check=True)
    return path


def make_manifest(root: Path, classes: int = 4, train_videos: int = 3, val_videos: int = 1,
                  composite: bool = True) -> Path:
    """Single-class videos of ``classes`` taxonomy classes (0..classes-1): ``train_videos`` of
    p1 (train) and ``val_videos`` of p2 (val) per class, plus one composite test video that
    ``cprclip frames`` must leave out. Returns the manifest path."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count, person in (("train", train_videos, "p1"), ("val", val_videos, "p2")):
        for c in range(classes):
            for v in range(1, count + 1):
                vid = f"{person}_c{c:02d}_{v}"
                seed = v + (100 if split == "val" else 0)
                path = write_video(root / "videos" / f"{vid}.mp4", class_frames(c, seed))
                rows.append(VideoRecord(vid, path, vid, 1, person, split, (c,)))
    if composite:
        path = write_video(root / "videos" / "p2_mix.mp4", class_frames(1, 7))
        rows.append(VideoRecord("p2_mix", path, "p2_mix", 1, "p2", "test", (1, 4)))
    manifest = root / "manifest.csv"
    write_manifest(manifest, rows)
    return manifest
