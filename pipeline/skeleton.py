"""The skeleton file: one video's 2D keypoints, the contract between whoever writes keypoints
(``cprclip synth``, ``cprclip pose``, the AlphaPose importer) and whoever reads them (the
skeleton stream of extract/finetune, the assistant).

One ``.npz`` per video (numpy's zip of arrays, read with ``allow_pickle=False``):

- ``keypoints``: float32 (T, K, 3): x and y in pixels of the video's frame (origin top left),
  and a score in [0, 1]. A joint that was not found has score 0 (its x, y are then 0 and mean
  nothing). T is the video's frame count; a frame where no person was found is all zeros.
- ``names``: the K keypoint names, in :data:`KEYPOINTS` order (checked on read).
- ``size``: int32 (2,) the frame's width and height in pixels.
- ``fps``: float32 (1,) frames per second.
- ``source``: str, who made the keypoints (e.g. ``synth-noisy``, ``synth-clean``,
  ``alphapose``, ``mediapipe``).

Keypoints: COCO-17 body order first (what AlphaPose and most 2D estimators output), then three
per hand. The hand errors of CPR-Coach (clenched, overlapped, one-handed) are about the palm
and fingers, which the COCO wrist alone cannot show: the index and pinky knuckles give the
palm's width and orientation (two stacked palms against interlocked ones), and the middle
fingertip against the knuckles tells a flat hand from a fist. The names and their numbers in
the 21-point hand layout (MediaPipe Hands, COCO-WholeBody) are in :data:`HAND_21_INDEX`.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear",
          "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
          "left_wrist", "right_wrist", "left_hip", "right_hip",
          "left_knee", "right_knee", "left_ankle", "right_ankle")
HAND_POINTS = ("index_mcp", "pinky_mcp", "middle_tip")
# Index of each hand point in the 21-point hand layout shared by MediaPipe Hands and COCO-WholeBody.
HAND_21_INDEX = {"index_mcp": 5, "pinky_mcp": 17, "middle_tip": 12}
KEYPOINTS = COCO17 + tuple(f"{side}_{p}" for side in ("left", "right") for p in HAND_POINTS)
NUM_KEYPOINTS = len(KEYPOINTS)  # 23

# Bones (undirected), for graph networks and drawing: COCO's skeleton plus wrist -> hand points.
_COCO_BONES = (("left_ankle", "left_knee"), ("left_knee", "left_hip"),
               ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
               ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
               ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"),
               ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
               ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
               ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"),
               ("left_eye", "left_ear"), ("right_eye", "right_ear"),
               ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"))
_HAND_BONES = tuple((f"{s}_wrist", f"{s}_{p}") for s in ("left", "right") for p in HAND_POINTS)
BONES = tuple((KEYPOINTS.index(a), KEYPOINTS.index(b)) for a, b in _COCO_BONES + _HAND_BONES)


class SkeletonError(ValueError):
    """A skeleton file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Skeleton:
    keypoints: np.ndarray  # float32 (T, K, 3): x, y in pixels, score in [0, 1]
    width: int
    height: int
    fps: float
    source: str

    @property
    def frames(self) -> int:
        return int(self.keypoints.shape[0])


def check_keypoints(kp: np.ndarray, where: str) -> np.ndarray:
    """(T, K, 3) finite float32 with scores in [0, 1], or SkeletonError naming ``where``."""
    kp = np.asarray(kp)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
        raise SkeletonError(f"{where}: keypoints have shape {kp.shape}, expected "
                            f"(frames, {NUM_KEYPOINTS}, 3)")
    if kp.shape[0] == 0:
        raise SkeletonError(f"{where}: keypoints have no frames")
    if not np.issubdtype(kp.dtype, np.floating) or not np.isfinite(kp).all():
        raise SkeletonError(f"{where}: keypoints must be finite floats")
    s = kp[..., 2]
    if (s < 0).any() or (s > 1).any():
        raise SkeletonError(f"{where}: keypoint scores must lie in [0, 1] "
                            f"(found {float(s.min()):.3g}..{float(s.max()):.3g})")
    return kp.astype(np.float32, copy=False)


def write_skeleton(path: str | Path, sk: Skeleton) -> Path:
    """Write ``sk`` to ``path`` (.npz) atomically: a temporary file, then a rename."""
    path = Path(path)
    kp = check_keypoints(sk.keypoints, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, keypoints=kp, names=np.array(KEYPOINTS),
                 size=np.array([sk.width, sk.height], np.int32),
                 fps=np.array([sk.fps], np.float32), source=np.array(sk.source))
    tmp.replace(path)
    return path


def read_skeleton(path: str | Path) -> Skeleton:
    """Read and check a skeleton file; any problem is one SkeletonError naming the file."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        raise SkeletonError(f"{path}: not a skeleton file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("keypoints", "names", "size", "fps", "source") if k not in z]
            if missing:
                raise SkeletonError(f"{path}: not a skeleton file (missing {', '.join(missing)})")
            names = tuple(str(n) for n in z["names"])
            if names != KEYPOINTS:
                raise SkeletonError(f"{path}: keypoint names differ from pipeline.skeleton."
                                    f"KEYPOINTS ({len(names)} names, expected {NUM_KEYPOINTS})")
            kp = check_keypoints(z["keypoints"], str(path))
            w, h = (int(v) for v in z["size"])
            fps = float(z["fps"][0])
            source = str(z["source"])
    except SkeletonError:
        raise
    except FileNotFoundError:
        raise SkeletonError(f"{path}: skeleton file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, IndexError) as e:
        raise SkeletonError(f"{path}: unreadable skeleton file ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    if w <= 0 or h <= 0 or not fps > 0:
        raise SkeletonError(f"{path}: bad frame size {w}x{h} or fps {fps}")
    return Skeleton(kp, w, h, fps, source)
