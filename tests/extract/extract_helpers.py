"""Helpers for the extract tests: tiny generated videos (lossless where exactness matters)."""
from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np

from pipeline.ffmpeg import FFmpegNotFound, ffmpeg_exe


def write_video(path: Path, frames: np.ndarray, fps: float = 25, gop: int = 10,
                lossless: bool = True) -> Path:
    """Encode (N, H, W, 3) uint8 RGB frames; ``lossless`` uses libx264rgb -qp 0 (exact RGB)."""
    n, h, w, _ = frames.shape
    codec = (["-c:v", "libx264rgb", "-qp", "0"] if lossless
             else ["-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p"])
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        exe = ffmpeg_exe()
    except FFmpegNotFound:  # a machine with Python packages only (the GPU one): PyAV's FFmpeg
        return _write_video_pyav(path, frames, fps, gop, lossless)
    subprocess.run([exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", *codec, "-g", str(gop),
                    "-bf", "2", str(path)], input=frames.tobytes(), check=True)
    return path


def _write_video_pyav(path: Path, frames: np.ndarray, fps: float, gop: int,
                      lossless: bool) -> Path:
    """:func:`write_video`'s encoding (same codecs, GOP and B-frames) through PyAV."""
    from fractions import Fraction

    import av

    n, h, w, _ = frames.shape
    with av.open(str(path), "w") as out:
        if lossless:
            st = out.add_stream("libx264rgb", rate=Fraction(fps).limit_denominator(1001),
                                options={"qp": "0", "bf": "2"})
            st.pix_fmt = "rgb24"
        else:
            st = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                options={"crf": "23", "bf": "2"})
            st.pix_fmt = "yuv420p"
        st.width, st.height = w, h
        st.codec_context.gop_size = gop
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if not lossless:
                frame = frame.reformat(format="yuv420p")
            for packet in st.encode(frame):
                out.mux(packet)
        for packet in st.encode(None):
            out.mux(packet)
    return path


def known_frames(n: int = 24, h: int = 36, w: int = 64, seed: int = 0,
                 signature: bool = True) -> np.ndarray:
    """Frames whose pixels differ per frame: random texture plus a moving bright square (and, with
    ``signature``, a per-frame colour in the top-left pixel)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, (h, w, 3), dtype=np.uint8)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = np.roll(base, i, axis=1).copy()
        x = (2 * i) % max(1, w - 10)
        f[h // 3:h // 3 + 10, x:x + 10] = 255
        if signature:
            f[0, 0] = (i, 255 - i, i * 3 % 256)
        out[i] = f
    return out


def make_dataset(root: Path, takes: int = 2, views: int = 2, frames: int = 24,
                 size: tuple[int, int] = (48, 36)) -> Path:
    """A manifest with ``takes`` x ``views`` tiny lossy videos (single labels, split train)."""
    w, h = size
    rows = []
    for t in range(takes):
        for v in range(1, views + 1):
            vid = f"t{t}_v{v}"
            fr = known_frames(frames, h, w, seed=t * 10 + v)
            write_video(root / "videos" / f"{vid}.mp4", fr, lossless=False)
            rows.append([vid, f"videos/{vid}.mp4", f"t{t}", v, f"p{t % 2 + 1}", "train", str(t % 14), ""])
    path = root / "manifest.csv"
    with path.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["video_id", "path", "take_id", "view", "participant", "split", "labels", "flow"])
        wr.writerows(rows)
    return path
