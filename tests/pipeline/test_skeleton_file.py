"""The skeleton file contract (pipeline/skeleton.py): an exact round trip, and one SkeletonError
naming the file for each kind of bad file."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.skeleton import (BONES, HAND_21_INDEX, KEYPOINTS, NUM_KEYPOINTS, Skeleton,
                               SkeletonError, read_skeleton, write_skeleton)


def _keypoints(frames: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kp = np.concatenate([rng.uniform(0, 160, (frames, NUM_KEYPOINTS, 2)),
                         rng.uniform(0, 1, (frames, NUM_KEYPOINTS, 1))], -1).astype(np.float32)
    kp[2] = 0.0  # a frame without a person
    return kp


def test_round_trip_is_exact(tmp_path):
    kp = _keypoints()
    path = write_skeleton(tmp_path / "sub" / "v1.npz", Skeleton(kp, 160, 120, 25.0, "synth-noisy"))
    assert path == tmp_path / "sub" / "v1.npz" and not list(tmp_path.rglob("*.tmp"))
    back = read_skeleton(path)
    assert back.keypoints.dtype == np.float32
    np.testing.assert_array_equal(back.keypoints, kp)
    assert (back.width, back.height, back.fps, back.source, back.frames) == (
        160, 120, 25.0, "synth-noisy", 7)


def test_layout_is_coco17_then_three_points_per_hand():
    assert NUM_KEYPOINTS == 23 and len(set(KEYPOINTS)) == 23
    assert KEYPOINTS[:5] == ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
    assert KEYPOINTS[9:11] == ("left_wrist", "right_wrist")
    assert KEYPOINTS[17:] == ("left_index_mcp", "left_pinky_mcp", "left_middle_tip",
                              "right_index_mcp", "right_pinky_mcp", "right_middle_tip")
    assert HAND_21_INDEX == {"index_mcp": 5, "pinky_mcp": 17, "middle_tip": 12}
    assert all(0 <= a < 23 and 0 <= b < 23 and a != b for a, b in BONES)


@pytest.mark.parametrize("kind", ["shape", "score", "nan", "empty"])
def test_write_refuses_bad_keypoints(tmp_path, kind):
    kp = _keypoints()
    if kind == "shape":
        kp = kp[:, :17]
    elif kind == "score":
        kp[0, 0, 2] = 1.5
    elif kind == "nan":
        kp[1, 3, 0] = np.nan
    else:
        kp = kp[:0]
    with pytest.raises(SkeletonError, match="x.npz"):
        write_skeleton(tmp_path / "x.npz", Skeleton(kp, 160, 120, 25.0, "t"))
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("kind", ["missing", "text", "no_names", "other_names", "bad_size"])
def test_read_names_the_file_and_problem(tmp_path, kind):
    p = tmp_path / "v.npz"
    kp = _keypoints()
    fields = dict(keypoints=kp, names=np.array(KEYPOINTS), size=np.array([160, 120], np.int32),
                  fps=np.array([25.0], np.float32), source=np.array("t"))
    if kind == "text":
        p.write_text("not a zip")
    elif kind == "no_names":
        del fields["names"]
    elif kind == "other_names":
        fields["names"] = np.array(KEYPOINTS[::-1])
    elif kind == "bad_size":
        fields["size"] = np.array([0, 120], np.int32)
    if kind not in ("missing", "text"):
        with open(p, "wb") as f:
            np.savez(f, **fields)
    with pytest.raises(SkeletonError) as e:
        read_skeleton(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
