"""What an estimator would make of the synthetic rescuer: clean keypoints -> noisy keypoints.

``cprclip synth`` knows every joint exactly (:func:`synth.render.figure_keypoints`); real 2D
estimators (AlphaPose, as CPR-Coach ships; MediaPipe) do not. To train and test the skeleton
stream on what it will meet, synth also writes a noisy copy made by :func:`add_noise`, the
model below. One number, ``[synth] keypoint_noise`` (the *strength* s), scales all of it;
s = 0 returns the clean keypoints unchanged, s = 1 is :class:`NoiseModel`'s defaults.

1. **Jitter** proportional to body size. Each coordinate of each joint gets an error with
   standard deviation ``s * jitter * size`` pixels, where ``size`` is the clip's body size
   (:func:`body_size`: the median over frames of the larger of the torso length and the
   shoulder width, in pixels): a person twice as large in the frame gets errors twice as
   large. Wrists and hand points get ``hand_jitter`` instead (small, fast, often blurred), and
   occluded joints ``occluded_jitter`` times more. The error follows an AR(1) process in time
   (correlation ``jitter_corr`` from frame to frame, the same standard deviation), because an
   estimator's mistakes persist over neighbouring frames rather than flicker independently.
2. **Scores**: visible joints score about ``score_visible`` (hand points ``score_hand``),
   occluded ones (behind another part or the manikin: the clean score is
   :data:`synth.render.SCORE_HIDDEN`) about ``score_occluded``, each with Gaussian spread
   ``score_spread``. At strength s a score is ``clean + s * (model - clean)``, clipped to
   [0, 1]. A joint outside the frame is not found: score 0 and x = y = 0.
3. **Missed frames**: runs of frames in which no person was found (all zeros). A two-state
   Markov chain with mean run length ``miss_run`` frames and a long-run share of
   ``s * miss_rate`` frames.
4. **Left/right swaps**: short runs (mean ``swap_run`` frames, share ``s * swap_rate``) in
   which every left joint trades place with its right twin, as estimators do when the
   person is seen from the side.

The random stream is the caller's (synth seeds it from the take and view with its own tag),
so the noise never touches the renderer's stream and the videos stay the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.skeleton import HAND_POINTS, KEYPOINTS, NUM_KEYPOINTS
from synth.render import SCORE_HIDDEN

__all__ = ["NoiseModel", "add_noise", "body_size", "markov_runs", "LEFT_RIGHT"]

# KEYPOINTS index of each joint's mirror twin (left <-> right; the nose is its own).
LEFT_RIGHT = np.array([KEYPOINTS.index(n.replace("left_", "\0").replace("right_", "left_")
                                       .replace("\0", "right_")) for n in KEYPOINTS])
_HAND_POINT = np.array([n.split("_", 1)[-1] in HAND_POINTS for n in KEYPOINTS])
_HAND = _HAND_POINT | np.array([n.endswith("_wrist") for n in KEYPOINTS])
_SHOULDERS = [KEYPOINTS.index("left_shoulder"), KEYPOINTS.index("right_shoulder")]
_HIPS = [KEYPOINTS.index("left_hip"), KEYPOINTS.index("right_hip")]


@dataclass(frozen=True)
class NoiseModel:
    """The noise at strength 1. Fractions are of the body size (:func:`body_size`)."""

    jitter: float = 0.03  # body joints: ~1.3 px on the demo's ~45 px torso, ~20 px at 4K
    hand_jitter: float = 0.05  # wrists and hand points: small, fast-moving parts
    occluded_jitter: float = 2.5  # an occluded joint is a guess: its error is this much larger
    jitter_corr: float = 0.7  # frame-to-frame correlation of a joint's error (AR(1))
    score_visible: float = 0.9
    score_hand: float = 0.75
    score_occluded: float = 0.35
    score_spread: float = 0.07
    miss_rate: float = 0.03  # share of frames without a person
    miss_run: float = 2.0  # mean length (frames) of a run of missed frames
    swap_rate: float = 0.02  # share of frames with left and right swapped
    swap_run: float = 4.0  # mean length (frames) of a swapped run


def body_size(clean: np.ndarray) -> float:
    """The clip's body size in pixels: the median over frames of the larger of the torso length
    (shoulder midpoint to hip midpoint) and the shoulder width. ``clean``: (T, K, 3)."""
    xy = clean[..., :2].astype(np.float64)
    torso = np.linalg.norm(xy[:, _SHOULDERS].mean(1) - xy[:, _HIPS].mean(1), axis=-1)
    width = np.linalg.norm(xy[:, _SHOULDERS[0]] - xy[:, _SHOULDERS[1]], axis=-1)
    return float(np.median(np.maximum(torso, width)))


def markov_runs(frames: int, rate: float, mean_run: float, rng: np.random.Generator) -> np.ndarray:
    """(frames,) bool: runs of True with mean length ``mean_run`` covering a long-run share
    ``rate`` of the frames (a two-state Markov chain started in its stationary state)."""
    on = np.zeros(frames, bool)
    if rate <= 0 or frames == 0:
        return on
    rate = min(rate, 0.5)
    leave = 1.0 / max(mean_run, 1.0)
    enter = rate / (1.0 - rate) * leave  # stationary share enter / (enter + leave) = rate
    u = rng.random(frames)
    state = bool(u[0] < rate)
    for t in range(frames):
        if t:
            state = bool(u[t] >= leave) if state else bool(u[t] < enter)
        on[t] = state
    return on


def _ar1(shape: tuple[int, ...], corr: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance AR(1) noise along axis 0 of ``shape``."""
    z = rng.standard_normal(shape)
    out = np.empty(shape)
    out[0] = z[0]
    k = np.sqrt(1.0 - corr * corr)
    for t in range(1, shape[0]):
        out[t] = corr * out[t - 1] + k * z[t]
    return out


def add_noise(clean: np.ndarray, width: int, height: int, strength: float,
              rng: np.random.Generator, model: NoiseModel = NoiseModel()) -> np.ndarray:
    """Estimator-like keypoints (T, K, 3) float32 from ``clean`` (T, K, 3): the module's model
    at ``strength`` (0 = an exact copy). ``width`` x ``height``: the frame, in pixels."""
    clean = np.asarray(clean, np.float32)
    if clean.ndim != 3 or clean.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"clean keypoints have shape {clean.shape}, expected "
                         f"(frames, {NUM_KEYPOINTS}, 3)")
    if not strength >= 0:
        raise ValueError(f"strength {strength} must be >= 0")
    if strength == 0:
        return clean.copy()
    T = clean.shape[0]
    s = float(strength)
    occluded = clean[..., 2] <= SCORE_HIDDEN  # (T, K)
    # 1. Jitter.
    sigma = np.where(_HAND, model.hand_jitter, model.jitter)[None, :] * body_size(clean) * s
    sigma = np.where(occluded, sigma * model.occluded_jitter, sigma)
    xy = clean[..., :2] + _ar1((T, NUM_KEYPOINTS, 2), model.jitter_corr, rng) * sigma[..., None]
    # 2. Scores.
    target = np.where(_HAND_POINT, model.score_hand, model.score_visible)[None, :]
    target = np.where(occluded, model.score_occluded, target)
    target = target + model.score_spread * rng.standard_normal((T, NUM_KEYPOINTS))
    score = np.clip(clean[..., 2] + s * (target - clean[..., 2]), 0.0, 1.0)
    out = np.concatenate([xy, score[..., None]], -1)
    cx, cy = clean[..., 0], clean[..., 1]
    outside = (cx <= -0.5) | (cx >= width - 0.5) | (cy <= -0.5) | (cy >= height - 0.5)
    out[outside] = 0.0
    # 3. Left/right swaps, then 4. missed frames (drawn in this order, whatever is enabled).
    swapped = markov_runs(T, s * model.swap_rate, model.swap_run, rng)
    out[swapped] = out[swapped][:, LEFT_RIGHT]
    missed = markov_runs(T, s * model.miss_rate, model.miss_run, rng)
    out[missed] = 0.0
    return out.astype(np.float32)
