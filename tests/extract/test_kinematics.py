"""Kinematic descriptors of the skeleton stream (extract/kinematics.py): the rate and the
amplitude of a body part's motion are read back from keypoints that move at a known rate."""
from __future__ import annotations

import numpy as np
import pytest

from extract.kinematics import BANDS, DIM, GROUPS, PER_SIGNAL, kinematic_features
from pipeline.skeleton import KEYPOINTS

FPS = 12.5


def _moving(rate_per_min: float, amp: float, frames: int = 40, noise: float = 0.0,
            seed: int = 0) -> np.ndarray:
    """(3, F, V): every joint found (score 1) at rest, the wrists and hands moving up and down."""
    rng = np.random.default_rng(seed)
    x = np.zeros((3, frames, len(KEYPOINTS)))
    x[2] = 1.0
    t = np.arange(frames) / FPS
    wave = 0.5 * amp * np.sin(2 * np.pi * rate_per_min / 60 * t)
    for name in GROUPS["wrists"] + GROUPS["hands"]:
        x[1, :, KEYPOINTS.index(name)] = wave
    x[:2] += noise * rng.standard_normal(x[:2].shape)
    return x


def _signal(f: np.ndarray, group: str, axis: int) -> np.ndarray:
    g = list(GROUPS).index(group)
    return f[(2 * g + axis) * PER_SIGNAL:(2 * g + axis + 1) * PER_SIGNAL]


@pytest.mark.parametrize("rate", [70.0, 110.0, 140.0])
def test_the_dominant_frequency_is_the_rate(rate):
    f = kinematic_features(_moving(rate, 0.2), FPS)
    assert f.shape == (DIM,) and f.dtype == np.float32 and np.isfinite(f).all()
    wrist_y = _signal(f, "wrists", 1)
    assert wrist_y[3] * 100 == pytest.approx(rate, abs=3.0)  # hundreds per minute
    assert wrist_y[4:].sum() == pytest.approx(1.0, abs=1e-5)  # band shares
    assert np.argmax(wrist_y[4:]) == int((rate / 60 - 0.6) / (2.4 / BANDS))


def test_amplitude_follows_the_motion_and_still_parts_stay_still():
    small = kinematic_features(_moving(110, 0.1), FPS)
    big = kinematic_features(_moving(110, 0.3), FPS)
    assert _signal(big, "wrists", 1)[0] == pytest.approx(3 * _signal(small, "wrists", 1)[0], rel=0.05)
    assert _signal(big, "wrists", 0)[0] == pytest.approx(0.0, abs=1e-9)  # no sideways motion
    assert _signal(big, "knees", 1)[0] == pytest.approx(0.0, abs=1e-9)


def test_missed_frames_are_bridged_and_a_missing_group_gives_zeros():
    x = _moving(100, 0.2, noise=0.005)
    full = kinematic_features(x, FPS)
    x[2, 10:14, :] = 0.0  # four frames where nothing was found
    for name in GROUPS["knees"]:
        x[2, :, KEYPOINTS.index(name)] = 0.0  # knees never found
    gap = kinematic_features(x, FPS)
    assert _signal(gap, "wrists", 1)[3] == pytest.approx(_signal(full, "wrists", 1)[3], abs=0.03)
    assert not _signal(gap, "knees", 1)[[0, 2, 3]].any()


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected \(3, F, 23\)"):
        kinematic_features(np.zeros((2, 10, 23)), FPS)
