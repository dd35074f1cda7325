"""Where the assistant takes a view's body keypoints from, for a run with a skeleton stream:
the file given, else the dataset's own file beside the video, else the pose estimator; with
none of them, one line that says what to do."""
from __future__ import annotations

import numpy as np
import pytest

from assist.assistant import Assistant, PredictError
from pipeline.skeleton import NUM_KEYPOINTS, Skeleton, write_skeleton


def _skeleton(path):
    kp = np.zeros((30, NUM_KEYPOINTS, 3), np.float32)
    kp[..., :2] = 50.0
    kp[..., 2] = 0.9
    return write_skeleton(path, Skeleton(kp, 160, 120, 25.0, "test"))


def test_given_file_then_dataset_file_then_a_clear_error(tmp_path, monkeypatch):
    a = Assistant.__new__(Assistant)  # _skeleton_files reads nothing of the loaded run
    videos = tmp_path / "data" / "videos"
    videos.mkdir(parents=True)
    v1, v2 = videos / "t1_v1.mp4", videos / "t1_v2.mp4"
    given = _skeleton(tmp_path / "mine.npz")
    own = _skeleton(tmp_path / "data" / "skeleton" / "t1_v2.npz")
    files, notes = a._skeleton_files([v1, v2], [1, 2], [given, None], tmp_path)
    assert files == [given, own]
    assert "file given" in notes[0] and "dataset's file" in notes[1]

    with pytest.raises(PredictError, match="not found"):
        a._skeleton_files([v1], [1], [tmp_path / "nope.npz"], tmp_path)

    # no file anywhere and no estimator venv: one line naming the video and the two ways out
    import extract.pose as pose

    monkeypatch.setattr(pose, "DEFAULT_VENV", str(tmp_path / "no-venv"))
    monkeypatch.setattr(pose.PoseEstimator.__init__, "__defaults__",
                        (str(tmp_path / "no-venv"),) + pose.PoseEstimator.__init__.__defaults__[1:])
    with pytest.raises(PredictError) as e:
        a._skeleton_files([videos / "other.mp4"], [3], [None], tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "other.mp4" in msg and "skeletons=" in msg
    assert "make pose-deps" in msg
