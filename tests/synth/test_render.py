"""The renderer: determinism, shapes, and that every error changes what the camera sees."""
from __future__ import annotations

import numpy as np
import pytest

from synth.render import derive_seed, render_clip, sample_motion, sample_participant

RES = (48, 36)


def test_same_seed_same_frames_different_seed_different():
    a = render_clip((4, 10), 1, 2, seed=7, resolution=RES, frames=10)
    b = render_clip((4, 10), 1, 2, seed=7, resolution=RES, frames=10)
    c = render_clip((4, 10), 1, 2, seed=8, resolution=RES, frames=10)
    assert a.shape == (10, RES[1], RES[0], 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 1.0


def test_dataset_seed_changes_the_people_not_the_label():
    a = render_clip((0,), 0, 1, seed=3, resolution=RES, frames=4, dataset_seed=0)
    b = render_clip((0,), 0, 1, seed=3, resolution=RES, frames=4, dataset_seed=1)
    assert np.abs(a.astype(int) - b).mean() > 5.0
    assert sample_participant(2, 0) == sample_participant(2, 0)
    assert sample_participant(2, 0) != sample_participant(3, 0)


def test_derive_seed_is_stable_and_distinct():
    # A fixed value: the seed must not depend on the process (Python's hash() would).
    assert derive_seed(0, "take", "p1_c00") == derive_seed(0, "take", "p1_c00")
    assert derive_seed(0, "take", "p1_c00") != derive_seed(1, "take", "p1_c00")
    assert derive_seed(0, "take", "p1_c00") == 9081908835574364641
    assert 0 <= derive_seed("x") < 2 ** 63


@pytest.mark.parametrize("resolution", [(64, 48), (96, 54)])
def test_any_even_resolution(resolution):
    clip = render_clip((8,), 0, 4, seed=1, resolution=resolution, frames=2)
    assert clip.shape == (2, resolution[1], resolution[0], 3)


def _motion(labels, seed=5, frames=150):
    return sample_motion(labels, sample_participant(0), seed, frames, 25.0)


def _rate(compress: np.ndarray, fps: float = 25.0) -> float:
    """Compressions per minute from the compression signal (peak count over time)."""
    c = compress - compress.mean()
    ups = np.flatnonzero((c[:-1] < 0) & (c[1:] >= 0))
    return 60.0 * fps * (len(ups) - 1) / (ups[-1] - ups[0])


def test_motion_parameters_follow_the_labels():
    correct = _motion((0,))
    assert 100 <= correct.rate_bpm <= 120 and 0.05 <= correct.depth <= 0.06
    assert 95 <= _rate(correct.compress) <= 125  # the signal really has that rate
    slow = _motion((11,))
    assert 60 <= slow.rate_bpm < 100 and 55 <= _rate(slow.compress) <= 105
    assert abs(_rate(slow.compress) - slow.rate_bpm) < 5
    shallow, deep = _motion((10,)), _motion((12,))
    assert shallow.depth < 0.05 <= correct.depth <= 0.06 < deep.depth
    assert shallow.compress.max() < correct.compress.max() < deep.compress.max()
    # the logged depth is the mean peak of the presses seen (each varies by +-10 %): the mean of
    # the signal's local maxima, within the frame sampling error and the presses at the edges
    for m in (correct, shallow, deep, slow):
        c = m.compress
        peaks = np.flatnonzero((c[1:-1] >= c[:-2]) & (c[1:-1] > c[2:])) + 1
        assert 0.9 * m.depth <= m.mean_depth <= 1.1 * m.depth
        assert abs(c[peaks].mean() - m.mean_depth) < 0.05 * m.mean_depth
    assert correct.jump.max() == 0 and _motion((6,)).jump.max() > 0.05
    assert _motion((1,)).hand_form == "overlap" and _motion((2,)).hand_form == "clench"
    assert _motion((3,)).hand_form == "single" and correct.hand_form == "interlock"
    assert _motion((7,)).posture == "squat" and _motion((8,)).posture == "stand"
    assert correct.posture == "kneel"
    assert _motion((4,)).bend > 0.5 and correct.bend == 0
    assert _motion((5,)).tilt > np.radians(20) and correct.tilt < np.radians(4)
    assert np.all(_motion((9,)).hand_offset[:, 0] > 0.15)
    assert np.abs(correct.hand_offset).max() < 0.04
    drift = _motion((13,)).hand_offset
    assert np.ptp(drift, axis=0).max() > 0.08  # the hands wander between presses
    combo = _motion((4, 6, 11, 12))
    assert combo.bend > 0 and combo.jump.max() > 0 and combo.rate_bpm < 100 and combo.depth > 0.06


@pytest.mark.parametrize("error", range(1, 14))
def test_every_error_is_visible(error):
    """Same person, camera and noise seed: the error clip differs from the correct one in the
    pixels the rescuer covers (well beyond the noise, which is identical for both)."""
    kw = dict(participant_index=0, seed=11, resolution=(80, 60), frames=30)
    diffs = []
    for view in (1, 2):
        ok = render_clip((0,), view=view, **kw).astype(np.int16)
        bad = render_clip((error,), view=view, **kw).astype(np.int16)
        diffs.append(np.abs(ok - bad).max(-1))
    changed = max(float((d > 40).mean()) for d in diffs)
    assert changed > 0.01, f"class {error} changes only {changed:.4%} of the pixels"
