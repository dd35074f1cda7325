"""Training clips of the skeleton stream: the single-class videos' skeleton files, windows of
them, and augmentation that keeps each label's meaning.

Each video's keypoints are read once (:func:`extract.skeleton_input.load_normalized`: sampled at
``skeleton_fps``, centred on the torso and divided by its length, per video) and kept in
memory (a few KB each). A training clip is a window of ``skeleton_frames`` frames:

- **train**: a random start, a speed change of at most :data:`SPEED` (3 %), then
  :func:`augment_keypoints`: a rotation of at most :data:`ROTATE_DEG`, an isotropic scale of at
  most :data:`SCALE`, a shift of at most :data:`SHIFT` and a joint jitter of :data:`JITTER`
  (torso lengths). Each is far below the gap between the classes it could blur: tilted arms
  lean 22-32 degrees, a slow rate is 25 % below a correct one, a shallow or a deep
  compression is half or twice a correct one. No horizontal flip (it would swap the
  rescuer's sides, and the cameras never mirror), no time stretch beyond a few %, no change of
  aspect (it would squash the vertical compression);
- **eval**: the centre window, no augmentation.

A video shorter than the window is looped (a compression is periodic; padding with zeros would
look like a person vanishing). Randomness comes from ``(seed, epoch, index)`` as in
:mod:`finetune.data`, so a resumed run sees the same clips. Shapes: C = 3 channels (x, y,
score), F = ``skeleton_frames``, V = 23 joints; items are ``(clip (C, F, V) float32, label,
index)``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from extract.skeleton_input import load_normalized, to_channels_first
from pipeline.skeleton import SkeletonError

ROTATE_DEG = 5.0  # camera roll; tilting-arms errors lean 22-32 degrees
SCALE = 0.05  # camera distance left after the torso scaling; depths differ 2x between classes
SHIFT = 0.05  # torso lengths: where the torso centre lands
JITTER = 0.01  # torso lengths per joint and frame, beside the keypoints' own noise
SPEED = 0.03  # rate: slow (60-78 /min) is 25 % below correct (100-120 /min)


def window_indices(num_frames: int, frames: int, start: float = 0.0,
                   speed: float = 1.0) -> np.ndarray:
    """(frames,) indices of a window from ``start`` stepping ``speed`` frames per frame,
    looped past the end."""
    idx = np.floor(start + np.arange(frames) * speed + 1e-6).astype(np.int64)
    return idx % num_frames


def train_window(num_frames: int, frames: int, rng: np.random.Generator,
                 speed_jitter: float = SPEED) -> np.ndarray:
    """A random window: speed in 1 +- ``speed_jitter``, start uniform over what fits."""
    speed = 1.0 + rng.uniform(-speed_jitter, speed_jitter)
    room = num_frames - frames * speed
    return window_indices(num_frames, frames, rng.uniform(0, room) if room > 0 else 0.0, speed)


def centre_window(num_frames: int, frames: int) -> np.ndarray:
    """The middle ``frames`` frames (looped when the video is shorter)."""
    return window_indices(num_frames, frames, max(0, (num_frames - frames) // 2))


def augment_keypoints(kp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(F, V, 3) normalised keypoints -> the same, rotated, scaled, shifted and jittered (module
    docstring); joints that were not found stay (0, 0, 0)."""
    a = math.radians(rng.uniform(-ROTATE_DEG, ROTATE_DEG))
    s = 1.0 + rng.uniform(-SCALE, SCALE)
    m = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], np.float32)
    shift = rng.uniform(-SHIFT, SHIFT, 2).astype(np.float32)
    out = kp.copy()
    out[..., :2] = kp[..., :2] @ m.T + shift
    out[..., :2] += rng.normal(0.0, JITTER, kp[..., :2].shape).astype(np.float32)
    out[kp[..., 2] <= 0] = 0.0
    return out


def load_clips(records: list, fps: float) -> list[np.ndarray]:
    """Every record's normalised keypoints (F_i, V, 3); the first bad one raises SkeletonError
    naming the video, its manifest row and the problem."""
    out = []
    for r in records:
        where = f"{r.video_id} (manifest row {r.row})" if r.row else r.video_id
        if r.skeleton is None:
            raise SkeletonError(f"{where}: no skeleton file (the manifest's 'skeleton' column is "
                                "empty and no pose index lists one; run 'cprclip pose')")
        try:
            out.append(load_normalized(r.skeleton, fps))
        except SkeletonError as e:
            raise SkeletonError(f"{where}: {e}") from None
    return out


class SkeletonClipDataset(torch.utils.data.Dataset):
    """Single-class videos -> ``(clip (C, F, V) float32, label, index)``; see the module
    docstring. ``cfg``: the stream's FinetuneConfig (seed, skeleton_fps, skeleton_frames,
    skeleton_augment)."""

    def __init__(self, records: list, cfg, train: bool):
        self.records, self.cfg, self.train = records, cfg, train
        self.clips = load_clips(records, cfg.skeleton_fps)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        cfg, kp = self.cfg, self.clips[i]
        if self.train:
            rng = np.random.default_rng((cfg.seed, epoch, i))
            if cfg.skeleton_augment:
                clip = augment_keypoints(kp[train_window(len(kp), cfg.skeleton_frames, rng)], rng)
            else:
                clip = kp[train_window(len(kp), cfg.skeleton_frames, rng, 0.0)]
        else:
            clip = kp[centre_window(len(kp), cfg.skeleton_frames)]
        return torch.from_numpy(to_channels_first(clip)), int(self.records[i].labels[0]), i
