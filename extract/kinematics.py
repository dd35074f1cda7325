"""Kinematic descriptors of a skeleton: how far and how often the body parts move.

Rate, depth, jumping and drifting hands are properties of motion over many frames: the period
and the amplitude of the up-and-down movement of the hands, arms, shoulders and head. A short
ST-GCN trained from scratch on a few hundred clips learns them poorly (the rate and depth
classes were its weakest), while they can be read off the keypoints directly. These
descriptors are appended to the skeleton stream's features (``[extract] skeleton_kinematics``)
and go through the same head as everything else; nothing here is learned.

Input: the skeleton stream's model input, (C, F, V) with C = (x, y, score), coordinates in
torso lengths from the torso centre (:mod:`extract.skeleton_input`), F frames at ``fps``.

For each joint group of :data:`GROUPS` and each image axis, the group's score-weighted mean
position per frame (frames where it was not found are interpolated), with its linear trend
removed, gives:

- the amplitude (95th minus 5th percentile) and its logarithm, and the standard deviation;
- the dominant frequency between 0.6 and 3 Hz (36-180 per minute), in hundreds per minute;
- the share of the signal's power in each of :data:`BANDS` frequency bands over that range.

So 16 numbers per (group, axis): :data:`DIM` = 7 x 2 x 16 = 224.
"""
from __future__ import annotations

import numpy as np

from pipeline.skeleton import KEYPOINTS

GROUPS: dict[str, tuple[str, ...]] = {
    "wrists": ("left_wrist", "right_wrist"),
    "hands": ("left_index_mcp", "left_pinky_mcp", "right_index_mcp", "right_pinky_mcp"),
    "elbows": ("left_elbow", "right_elbow"),
    "shoulders": ("left_shoulder", "right_shoulder"),
    "head": ("nose",),
    "hips": ("left_hip", "right_hip"),
    "knees": ("left_knee", "right_knee"),
}
F_LO, F_HI = 0.6, 3.0  # Hz: 36-180 compressions per minute
BANDS = 12
PER_SIGNAL = 4 + BANDS
DIM = len(GROUPS) * 2 * PER_SIGNAL
FFT_SIZE = 1024  # zero padding: a 3 s clip's spectrum read at ~0.01-0.02 Hz steps
MIN_SCORE = 0.2  # a joint below this score counts as not found

_INDEX = {g: [KEYPOINTS.index(n) for n in names] for g, names in GROUPS.items()}


def describe(fps: float) -> str:
    """One line for the feature recipe."""
    return (f"kinematics: amplitude, dominant frequency and {BANDS}-band spectrum "
            f"({F_LO:g}-{F_HI:g} Hz) of {len(GROUPS)} joint groups' x and y at {fps:g} fps "
            f"({DIM} values per video, the same in every segment)")


def _fill(v: np.ndarray, ok: np.ndarray) -> np.ndarray:
    if ok.all():
        return v
    if ok.sum() < 2:
        return np.zeros_like(v)
    t = np.arange(len(v))
    return np.interp(t, t[ok], v[ok])


def _signal_features(v: np.ndarray, fps: float) -> np.ndarray:
    n = len(v)
    t = np.arange(n, dtype=np.float64)
    if n >= 2:
        v = v - np.polyval(np.polyfit(t, v, 1), t)
    amp = float(np.percentile(v, 95) - np.percentile(v, 5)) if n else 0.0
    spec = np.abs(np.fft.rfft(v * np.hanning(n), FFT_SIZE)) ** 2 if n >= 4 else np.zeros(FFT_SIZE // 2 + 1)
    freqs = np.fft.rfftfreq(FFT_SIZE, 1.0 / fps)
    band = (freqs >= F_LO) & (freqs < F_HI)
    sb, fb = spec[band], freqs[band]
    dom = float(fb[np.argmax(sb)]) if sb.size and sb.max() > 0 else 0.0
    edges = np.linspace(F_LO, F_HI, BANDS + 1)
    power = np.array([sb[(fb >= a) & (fb < b)].sum() for a, b in zip(edges[:-1], edges[1:])])
    power = power / power.sum() if power.sum() > 0 else power
    return np.concatenate([[amp, np.log(amp + 1e-4), float(v.std()), dom * 60 / 100], power])


def kinematic_features(x: np.ndarray, fps: float) -> np.ndarray:
    """(C, F, V) normalised keypoints at ``fps`` -> (DIM,) float32 descriptors."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] != 3 or x.shape[2] != len(KEYPOINTS):
        raise ValueError(f"kinematics: expected (3, F, {len(KEYPOINTS)}) keypoints, got {x.shape}")
    score = x[2]  # (F, V)
    out = []
    for idx in _INDEX.values():
        w = (score[:, idx] > MIN_SCORE).astype(np.float64)  # (F, J)
        found = w.sum(axis=1) > 0
        for axis in (0, 1):
            pos = (x[axis][:, idx] * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1.0)
            out.append(_signal_features(_fill(pos, found), fps))
    return np.concatenate(out).astype(np.float32)
