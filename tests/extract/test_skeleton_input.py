"""The skeleton stream's input (extract/skeleton_input.py) and training clips (finetune/skeleton.py):
frame-rate sampling, the per-video torso normalisation, windows and augmentation."""
import math

import numpy as np
import pytest

from extract.skeleton_input import (load_normalized, normalize_keypoints, resample_indices,
                                    to_channels_first, torso_frame)
from finetune.skeleton import (ROTATE_DEG, SCALE, SHIFT, SPEED, augment_keypoints, centre_window,
                               train_window, window_indices)
from pipeline.skeleton import KEYPOINTS, NUM_KEYPOINTS, Skeleton, SkeletonError, write_skeleton

LS, RS, LH, RH = (KEYPOINTS.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip",
                                                "right_hip"))


def _pose(frames: int = 20, seed: int = 0) -> np.ndarray:
    """(F, V, 3) pixels: shoulders at y=40, hips at y=80 (torso length 40, centre (80, 60)),
    other joints anywhere, all found, shoulders bobbing 4 px."""
    rng = np.random.default_rng(seed)
    kp = np.zeros((frames, NUM_KEYPOINTS, 3), np.float32)
    kp[..., 0] = rng.uniform(40, 120, (frames, NUM_KEYPOINTS))
    kp[..., 1] = rng.uniform(20, 100, (frames, NUM_KEYPOINTS))
    kp[..., 2] = rng.uniform(0.3, 1.0, (frames, NUM_KEYPOINTS))
    bob = 4 * np.sin(np.arange(frames) * 2 * np.pi / 10)
    kp[:, LS, :2], kp[:, RS, :2] = (70, 40), (90, 40)
    kp[:, LH, :2], kp[:, RH, :2] = (70, 80), (90, 80)
    kp[:, LS, 1] += bob
    kp[:, RS, 1] += bob
    return kp


def test_resample_indices():
    assert resample_indices(10, 25, 25).tolist() == list(range(10))
    assert resample_indices(10, 25, 0).tolist() == list(range(10))
    assert resample_indices(10, 25, 12.5).tolist() == [0, 2, 4, 6, 8]
    # 30 fps to 25: nearest frame by time, never past the end
    idx = resample_indices(30, 30, 25)
    assert len(idx) == 25 and idx[-1] <= 29
    np.testing.assert_allclose(idx / 30, np.arange(25) / 25, atol=1 / 60 + 1e-9)


def test_normalisation_centres_scales_and_keeps_the_motion():
    kp = _pose()
    centre, length = torso_frame(kp)
    np.testing.assert_allclose(centre, (80, 60), atol=1e-4)  # median over frames
    assert length == pytest.approx(40, abs=1e-4)
    out = normalize_keypoints(kp)
    np.testing.assert_allclose(out[..., :2], (kp[..., :2] - (80, 60)) / 40, atol=1e-5)
    np.testing.assert_array_equal(out[..., 2], kp[..., 2])
    # the shoulders' bob survives (per-video, not per-frame, centring)
    assert np.ptp(out[:, LS, 1]) == pytest.approx(8 / 40, abs=0.02)
    # invariant to where the person stands and how far the camera is
    moved = kp.copy()
    moved[..., :2] = kp[..., :2] * 2.5 + (300, -40)
    np.testing.assert_allclose(normalize_keypoints(moved), out, atol=1e-5)


def test_missing_joints_stay_zero_and_one_side_is_enough():
    kp = _pose()
    kp[:, 0] = 0  # the nose never found
    kp[3, :, 2] = 0  # frame 3: no person
    kp[3, :, :2] = 0
    kp[:, RS] = 0  # right shoulder hidden: the left one stands for mid-shoulder
    out = normalize_keypoints(kp)
    assert (out[:, 0] == 0).all() and (out[3] == 0).all() and (out[:, RS] == 0).all()
    centre, length = torso_frame(kp)
    np.testing.assert_allclose(centre, (75, 60), atol=1e-4)  # (mean of (70, 40), (80, 80))
    assert length == pytest.approx(math.hypot(10, 40), abs=1e-3)
    kp[:, [LH, RH], 2] = 0
    with pytest.raises(ValueError, match="shoulder and a hip"):
        normalize_keypoints(kp)


def test_load_normalized_and_its_errors(tmp_path):
    kp = _pose(frames=50)
    p = write_skeleton(tmp_path / "a.npz", Skeleton(kp, 160, 120, 25.0, "test"))
    x = load_normalized(p, 12.5)
    assert x.shape == (25, NUM_KEYPOINTS, 3)
    np.testing.assert_allclose(x, normalize_keypoints(kp[::2]), atol=1e-5)
    assert to_channels_first(x).shape == (3, 25, NUM_KEYPOINTS)
    empty = kp.copy()
    empty[..., 2] = 0
    p2 = write_skeleton(tmp_path / "b.npz", Skeleton(empty, 160, 120, 25.0, "test"))
    with pytest.raises(SkeletonError, match=r"b\.npz: no keypoint"):
        load_normalized(p2, 25)
    bad = tmp_path / "c.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SkeletonError, match=r"c\.npz"):
        load_normalized(bad, 25)


def test_windows():
    assert window_indices(10, 4, 2).tolist() == [2, 3, 4, 5]
    assert window_indices(5, 8).tolist() == [0, 1, 2, 3, 4, 0, 1, 2]  # looped
    assert centre_window(10, 4).tolist() == [3, 4, 5, 6]
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = train_window(100, 32, rng)
        steps = np.diff(idx)
        assert len(idx) == 32 and idx.min() >= 0 and idx.max() < 100
        # a few % of speed change at most: the window spans 31 steps of 1 +- SPEED frames
        assert abs(idx[-1] - idx[0] - 31) <= 31 * SPEED + 1 and set(steps) <= {0, 1, 2}


def test_augmentation_is_small_and_keeps_missing_joints():
    kp = normalize_keypoints(_pose())
    kp[:, 5] = 0
    rng = np.random.default_rng(1)
    for _ in range(50):
        out = augment_keypoints(kp, rng)
        assert (out[:, 5] == 0).all()
        np.testing.assert_array_equal(out[..., 2], kp[..., 2])
        # the torso's length and angle change by no more than the scale and the rotation allow
        # (plus the joint jitter)
        def torso(a):
            return a[:, [LS, RS], :2].mean(1) - a[:, [LH, RH], :2].mean(1)

        t0, t1 = torso(kp), torso(out)
        ratio = np.linalg.norm(t1, axis=1) / np.linalg.norm(t0, axis=1)
        assert (np.abs(ratio - 1) < SCALE + 0.08).all()
        ang = np.degrees(np.arctan2(t1[:, 0], t1[:, 1]) - np.arctan2(t0[:, 0], t0[:, 1]))
        assert (np.abs((ang + 180) % 360 - 180) < ROTATE_DEG + 5).all()
        # centre moved by at most the shift (plus jitter)
        assert np.abs(out[..., :2].mean() - kp[..., :2].mean()) < SHIFT + 0.1
