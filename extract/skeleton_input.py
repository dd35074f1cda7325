"""The skeleton stream's input: a skeleton file (:mod:`pipeline.skeleton`) -> ST-GCN input.

Pure numpy; shared by ``cprclip finetune`` (training clips) and ``cprclip extract`` (whole
videos), so both see the same numbers.

1. **Frame rate** (:func:`resample_indices`): frames are picked at ``fps`` frames per second
   (nearest frame by time), so a compression rate is the same number of frames per cycle
   whatever the camera's rate.
2. **Normalisation** (:func:`normalize_keypoints`): x, y are centred on the torso centre (the
   midpoint of mid-shoulder and mid-hip) and divided by the torso length (mid-shoulder to
   mid-hip), both the median over the video's frames. Per *video*, not per frame: a per-frame
   centre would subtract the body's own up-and-down motion, which is the compression and the
   jump; a per-frame scale would shrink a deep compression. So the numbers do not depend on
   where the rescuer stands in the image or how far the camera is, and the motion stays.
   Joints with score 0 (not found) stay (0, 0, 0). Channels: x, y, score.

Shapes: T frames, V = 23 joints, C = 3 channels. Model input is (C, T, V) float32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.skeleton import KEYPOINTS, SkeletonError, read_skeleton

SHOULDERS = (KEYPOINTS.index("left_shoulder"), KEYPOINTS.index("right_shoulder"))
HIPS = (KEYPOINTS.index("left_hip"), KEYPOINTS.index("right_hip"))
MIN_TORSO_PX = 1.0  # a torso shorter than a pixel is a broken detection, not a person


def resample_indices(num_frames: int, src_fps: float, fps: float) -> np.ndarray:
    """(T',) frame indices that sample a ``num_frames``-frame video at ``fps`` (nearest frame
    in time). ``fps`` <= 0 or equal to ``src_fps``: every frame."""
    if fps <= 0 or abs(fps - src_fps) < 1e-6:
        return np.arange(num_frames)
    n = max(1, int(np.floor(num_frames * fps / src_fps + 1e-6)))
    return np.minimum(np.rint(np.arange(n) * src_fps / fps).astype(np.int64), num_frames - 1)


def torso_frame(kp: np.ndarray) -> tuple[np.ndarray, float]:
    """The video's torso centre (2,) and torso length from (T, V, 3) pixel keypoints: per frame
    the mean of the found shoulders and of the found hips, then the median over the frames that
    have at least one of each. Raises ValueError when no frame has them."""
    ok = kp[..., 2] > 0  # (T, V)
    sh_ok, hip_ok = ok[:, list(SHOULDERS)], ok[:, list(HIPS)]
    usable = sh_ok.any(axis=1) & hip_ok.any(axis=1)
    if not usable.any():
        raise ValueError("no frame shows a shoulder and a hip (cannot find the torso)")

    def mean_of(idx: tuple[int, ...], found: np.ndarray) -> np.ndarray:
        xy = kp[usable][:, list(idx), :2]  # (F, 2, 2)
        w = found[usable][..., None].astype(np.float64)
        return (xy * w).sum(axis=1) / w.sum(axis=1)

    shoulder, hip = mean_of(SHOULDERS, sh_ok), mean_of(HIPS, hip_ok)  # (F, 2) each
    centre = np.median((shoulder + hip) / 2, axis=0)
    length = float(np.median(np.linalg.norm(shoulder - hip, axis=1)))
    if not length >= MIN_TORSO_PX:
        raise ValueError(f"torso length {length:.2g} px is too small to scale by")
    return centre, length


class SkeletonInput(np.ndarray):
    """A normalised keypoint array that remembers its video's torso length in image heights
    (``torso_height``), which the normalisation divides out; the kinematic descriptors use it
    to express amplitudes in image heights (:mod:`extract.kinematics`). Slices, transposes and
    copies keep it; arithmetic results are plain arrays in spirit but keep it too."""

    torso_height: float

    def __new__(cls, array: np.ndarray, torso_height: float) -> "SkeletonInput":
        obj = np.asarray(array).view(cls)
        obj.torso_height = float(torso_height)
        return obj

    def __array_finalize__(self, obj) -> None:
        self.torso_height = getattr(obj, "torso_height", 0.0)


def normalize_keypoints(kp: np.ndarray, frame: tuple[np.ndarray, float] | None = None
                        ) -> np.ndarray:
    """(T, V, 3) pixels + score -> (T, V, 3) float32: x, y in torso lengths from the torso
    centre (module docstring), score unchanged; joints with score 0 are all zeros. ``frame``:
    the video's (centre, length) when the caller already has them (:func:`torso_frame`)."""
    kp = np.asarray(kp, dtype=np.float32)
    centre, length = frame if frame is not None else torso_frame(kp)
    out = kp.copy()
    out[..., :2] = (kp[..., :2] - centre.astype(np.float32)) / np.float32(length)
    out[kp[..., 2] <= 0] = 0.0
    return out


def to_channels_first(kp: np.ndarray) -> np.ndarray:
    """(T, V, C) -> (C, T, V) float32, contiguous (the ST-GCN input layout); a
    :class:`SkeletonInput` stays one (with its ``torso_height``)."""
    out = np.ascontiguousarray(np.transpose(kp, (2, 0, 1)), dtype=np.float32)
    height = getattr(kp, "torso_height", None)
    return SkeletonInput(out, height) if height is not None else out


def load_normalized(path: str | Path, fps: float) -> np.ndarray:
    """A skeleton file, sampled at ``fps`` and normalised: (T, V, 3) float32, a
    :class:`SkeletonInput` carrying the torso length in image heights. Raises
    SkeletonError naming the file (unreadable, no torso in any frame)."""
    sk = read_skeleton(path)
    kp = sk.keypoints[resample_indices(sk.frames, sk.fps, fps)]
    if not (kp[..., 2] > 0).any():
        raise SkeletonError(f"{path}: no keypoint was found in any frame (all scores are 0)")
    kp = np.asarray(kp, dtype=np.float32)
    try:
        centre, length = torso_frame(kp)
    except ValueError as e:
        raise SkeletonError(f"{path}: {e}") from None
    return SkeletonInput(normalize_keypoints(kp, (centre, length)),
                         length / sk.height if sk.height > 0 else 0.0)


def describe(fps: float) -> str:
    """The input recipe in one line, for feature files and checkpoints."""
    rate = f"{fps:g} fps" if fps > 0 else "native fps"
    return (f"skeleton frames at {rate}; x, y centred on the torso centre and divided by the "
            "torso length (medians per video); channels x, y, score; missing joints zero")
