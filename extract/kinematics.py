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
- the share of the signal's power in each of :data:`BANDS` frequency bands over that range;
- the *periodic amplitude*: the peak-to-peak of a least-squares fit of the dominant frequency
  and its first :data:`HARMONICS` harmonics (plus an offset and a trend), and its logarithm,
  in torso lengths and again in image heights (below);
- where the group is: its median position over the frames (from the torso centre, so posture:
  hands on the belly, hips low in a squat), in torso lengths and in image heights.

So 22 numbers per (group, axis): :data:`DIM` = 9 x 2 x 22 = 396.

Why the periodic amplitude: an estimator's error on a small joint is as large as the motion
(synth's noise model: wrists and hand points jitter by 5 % of the body size, ~2 px on the demo's
~45 px torso, against a 2-5 px compression), and the percentile amplitude measures that jitter
as much as the motion. A fit at the compression's own frequency averages the jitter away: on
the demo's noisy keypoints the hand points' periodic amplitude follows the true depth with
correlation 0.89-0.97 per view on the depth-only training clips, where the percentile
amplitude of the wrists gave 0.15-0.58 (docs/skeleton.md, "Depth from the hands").

Why image heights: dividing by the torso length makes the numbers independent of the camera's
distance, but in a view along the trunk the torso's projected length changes with the posture
(kneeling, squatting, standing), so a squatting rescuer's compression looks deeper than a
kneeling one's. A fixed camera sees a centimetre of compression as the same share of the image
whatever the posture; the caller passes the video's torso length in image heights
(:class:`extract.skeleton_input.SkeletonInput` carries it) and these entries are 0 when it is
not known.
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
    "ankles": ("left_ankle", "right_ankle"),
    # both hands' points together: six noisy estimates of where the hands press
    "hand_points": ("left_wrist", "right_wrist", "left_index_mcp", "left_pinky_mcp",
                    "right_index_mcp", "right_pinky_mcp"),
}
F_LO, F_HI = 0.6, 3.0  # Hz: 36-180 compressions per minute
BANDS = 12
HARMONICS = 3  # the periodic fit: the dominant frequency and its 2nd and 3rd harmonics
PER_SIGNAL = 4 + BANDS + 4 + 2
DIM = len(GROUPS) * 2 * PER_SIGNAL
FFT_SIZE = 1024  # zero padding: a 3 s clip's spectrum read at ~0.01-0.02 Hz steps
MIN_SCORE = 0.2  # a joint below this score counts as not found

_INDEX = {g: [KEYPOINTS.index(n) for n in names] for g, names in GROUPS.items()}


def describe(fps: float) -> str:
    """One line for the feature recipe."""
    return (f"kinematics: median position, amplitude, dominant frequency, {BANDS}-band spectrum "
            f"({F_LO:g}-{F_HI:g} Hz) and periodic amplitude ({HARMONICS} harmonics; torso "
            f"lengths and image heights) of {len(GROUPS)} joint groups' x and y at {fps:g} fps "
            f"({DIM} values per video, the same in every segment)")


def _fill(v: np.ndarray, ok: np.ndarray) -> np.ndarray:
    if ok.all():
        return v
    if ok.sum() < 2:
        return np.zeros_like(v)
    t = np.arange(len(v))
    return np.interp(t, t[ok], v[ok])


def periodic_amplitude(v: np.ndarray, fps: float, freq: float) -> float:
    """Peak-to-peak over one period of the least-squares fit of ``v`` by an offset, a linear
    trend and sines and cosines at ``freq`` (Hz) and its first :data:`HARMONICS` multiples."""
    n = len(v)
    if freq <= 0 or n < 2 * HARMONICS + 3:
        return 0.0
    t = np.arange(n) / fps
    waves = [f(2 * np.pi * k * freq * t) for k in range(1, HARMONICS + 1) for f in (np.sin, np.cos)]
    design = np.stack([np.ones(n), t - t.mean(), *waves], axis=1)
    coef = np.linalg.lstsq(design, v, rcond=None)[0][2:]
    tt = np.linspace(0.0, 1.0 / freq, 64, endpoint=False)
    one = sum(coef[2 * (k - 1)] * np.sin(2 * np.pi * k * freq * tt)
              + coef[2 * (k - 1) + 1] * np.cos(2 * np.pi * k * freq * tt)
              for k in range(1, HARMONICS + 1))
    return float(one.max() - one.min())


def _signal_features(v: np.ndarray, fps: float, torso_height: float) -> np.ndarray:
    n = len(v)
    where = float(np.median(v)) if n else 0.0
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
    pp = periodic_amplitude(v, fps, dom)
    pp_img = pp * torso_height  # torso lengths -> image heights; 0 when not known
    return np.concatenate([[amp, np.log(amp + 1e-4), float(v.std()), dom * 60 / 100], power,
                           [pp, np.log(pp + 1e-4), pp_img, np.log(pp_img + 1e-5) if pp_img else 0.0],
                           [where, where * torso_height]])


def kinematic_features(x: np.ndarray, fps: float, torso_height: float | None = None) -> np.ndarray:
    """(C, F, V) normalised keypoints at ``fps`` -> (DIM,) float32 descriptors.

    ``torso_height``: the video's torso length in image heights, for the image-height
    amplitudes; by default the one an :class:`extract.skeleton_input.SkeletonInput` carries,
    and 0 (those entries 0) for a plain array."""
    if torso_height is None:
        torso_height = float(getattr(x, "torso_height", 0.0))
    if not np.isfinite(torso_height) or torso_height < 0:
        raise ValueError(f"kinematics: torso_height must be a finite number >= 0, got {torso_height}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] != 3 or x.shape[2] != len(KEYPOINTS):
        raise ValueError(f"kinematics: expected (3, F, {len(KEYPOINTS)}) keypoints, got {x.shape}")
    score = x[2]  # (F, V)
    out = []
    for idx in _INDEX.values():
        w = np.where(score[:, idx] > MIN_SCORE, score[:, idx], 0.0)  # (F, J)
        found = w.sum(axis=1) > 0
        for axis in (0, 1):
            pos = (x[axis][:, idx] * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-9)
            out.append(_signal_features(_fill(pos, found), fps, torso_height))
    return np.concatenate(out).astype(np.float32)
