"""Segment sampling against hand-computed indices and against mmaction2's SampleFrames."""
from __future__ import annotations

import numpy as np
import pytest

from extract.sampling import segment_indices


def col(x):
    return np.asarray(x)[:, None]


def test_tsn_test_rgb_centres_of_segments():
    # 80 frames / 8 segments = 10 per segment; centre offset 5.
    np.testing.assert_array_equal(segment_indices(80, 8), col([5, 15, 25, 35, 45, 55, 65, 75]))
    # 24 frames: 3 per segment, int(3t + 1.5).
    np.testing.assert_array_equal(segment_indices(24, 8), col([1, 4, 7, 10, 13, 16, 19, 22]))


def test_video_shorter_than_segments_repeats_frames():
    # 5 frames, 8 segments: avg 0.625, int(0.625 t + 0.3125).
    np.testing.assert_array_equal(segment_indices(5, 8), col([0, 0, 1, 2, 2, 3, 4, 4]))
    np.testing.assert_array_equal(segment_indices(1, 8), col([0] * 8))


def test_flow_clip_len_5():
    # 79 flow frames: avg (79 - 5 + 1) / 8 = 9.375, start int(9.375 t + 4.6875).
    starts = [4, 14, 23, 32, 42, 51, 60, 70]
    want = np.array([[s + j for j in range(5)] for s in starts])
    np.testing.assert_array_equal(segment_indices(79, 8, clip_len=5), want)


def test_clip_longer_than_segment():
    # 20 frames, 8 segments of 2.5 frames, clips of 5: avg (20 - 5 + 1) / 8 = 2, starts 2t + 1.
    want = np.array([[1 + 2 * t + j for j in range(5)] for t in range(8)])
    np.testing.assert_array_equal(segment_indices(20, 8, clip_len=5), want)
    # Fewer frames than one clip: every clip starts at 0 and wraps around (loop).
    np.testing.assert_array_equal(segment_indices(3, 2, clip_len=5),
                                  np.array([[0, 1, 2, 0, 1], [0, 1, 2, 0, 1]]))


@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 24, 80, 487, 1000])
def test_matches_mmaction2_sampleframes_rgb(n):
    from pipeline.mmcompat import import_mmaction_models

    import_mmaction_models()
    from mmaction.datasets.transforms import SampleFrames

    ref = SampleFrames(clip_len=1, frame_interval=1, num_clips=8, test_mode=True)
    got = ref.transform(dict(total_frames=n, start_index=0))["frame_inds"]
    np.testing.assert_array_equal(segment_indices(n, 8).reshape(-1), got)


def test_train_mode_random_inside_segments_and_seeded():
    a = segment_indices(80, 8, mode="train", rng=np.random.default_rng(1))
    b = segment_indices(80, 8, mode="train", rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    starts = a[:, 0]
    assert ((starts >= np.arange(8) * 10) & (starts < np.arange(8) * 10 + 10)).all()
    draws = {tuple(segment_indices(80, 8, mode="train", rng=np.random.default_rng(s))[:, 0])
             for s in range(5)}
    assert len(draws) > 1  # it is random
    # 5 frames in train mode: evenly spread, around(0.625 t) (numpy rounds half to even).
    np.testing.assert_array_equal(segment_indices(5, 8, mode="train", rng=np.random.default_rng(0)),
                                  col([0, 1, 1, 2, 2, 3, 4, 4]))
    # 12 frames, 8 segments: avg 1 -> start t + randint(1) = t.
    np.testing.assert_array_equal(
        segment_indices(12, 8, clip_len=5, mode="train", rng=np.random.default_rng(0))[:, 0],
        np.arange(8))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        segment_indices(0, 8)
    with pytest.raises(ValueError, match="test, train"):
        segment_indices(10, 8, mode="val")
