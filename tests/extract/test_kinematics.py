"""Kinematic descriptors of the skeleton stream (extract/kinematics.py): the rate and the
amplitude of a body part's motion are read back from keypoints that move at a known rate."""
from __future__ import annotations

import numpy as np
import pytest

from extract.kinematics import BANDS, DIM, GROUPS, PER_SIGNAL, kinematic_features, periodic_amplitude
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
    bands = wrist_y[4:4 + BANDS]
    assert bands.sum() == pytest.approx(1.0, abs=1e-5)  # band shares
    assert np.argmax(bands) == int((rate / 60 - 0.6) / (2.4 / BANDS))


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


PP, PP_IMG = 4 + BANDS, 4 + BANDS + 2  # periodic amplitude in torso lengths, in image heights


def test_periodic_amplitude_reads_the_motion_through_estimator_jitter():
    """Jitter as large as the motion (an AR(1) error, as synth's noise model makes): the
    percentile amplitude mostly measures the jitter, the periodic fit the motion."""
    rng = np.random.default_rng(3)
    frames, fps, amp = 80, 25.0, 0.1
    t = np.arange(frames) / fps
    errs_fit, errs_pct = [], []
    for _ in range(20):
        e = np.zeros(frames)
        for i in range(1, frames):  # AR(1), correlation 0.7, sd 0.05 (half the amplitude)
            e[i] = 0.7 * e[i - 1] + np.sqrt(1 - 0.49) * 0.05 * rng.standard_normal()
        v = 0.5 * amp * np.sin(2 * np.pi * 1.8 * t + rng.uniform(0, 6)) + e
        errs_fit.append(abs(periodic_amplitude(v, fps, 1.8) - amp))
        errs_pct.append(abs(np.percentile(v, 95) - np.percentile(v, 5) - amp))
    assert np.median(errs_fit) < 0.3 * np.median(errs_pct)
    assert np.median(errs_fit) < 0.02
    assert periodic_amplitude(np.zeros(80), fps, 0.0) == 0.0  # no rhythm found: no amplitude


def test_image_height_amplitudes_scale_with_the_torso_and_default_to_zero():
    from extract.skeleton_input import SkeletonInput

    x = _moving(110, 0.2)
    plain = kinematic_features(x, FPS)
    carried = kinematic_features(SkeletonInput(x, 0.25), FPS)
    hp = _signal(carried, "hand_points", 1)
    assert hp[PP] == pytest.approx(0.2, rel=0.02)  # torso lengths
    assert hp[PP_IMG] == pytest.approx(0.05, rel=0.02)  # a torso is a quarter of the image
    assert _signal(plain, "hand_points", 1)[PP_IMG] == 0.0  # not known: 0
    assert np.array_equal(np.delete(plain, np.s_[PP_IMG::PER_SIGNAL]),
                          np.delete(kinematic_features(x, FPS, torso_height=0.0), np.s_[PP_IMG::PER_SIGNAL]))
    with pytest.raises(ValueError, match="torso_height"):
        kinematic_features(x, FPS, torso_height=float("nan"))


def test_the_torso_height_travels_from_the_file_to_the_model_input(tmp_path):
    from extract.skeleton_input import load_normalized, to_channels_first
    from pipeline.skeleton import Skeleton, write_skeleton

    kp = np.zeros((30, len(KEYPOINTS), 3), np.float32)
    kp[..., 2] = 1.0
    for name, (x, y) in {"left_shoulder": (40, 20), "right_shoulder": (60, 20),
                         "left_hip": (40, 50), "right_hip": (60, 50)}.items():
        kp[:, KEYPOINTS.index(name), :2] = (x, y)
    path = write_skeleton(tmp_path / "a.npz", Skeleton(kp, 160, 120, 25.0, "test"))
    x = to_channels_first(load_normalized(path, 25.0))
    assert x.shape == (3, 30, len(KEYPOINTS)) and x.torso_height == pytest.approx(30 / 120)
