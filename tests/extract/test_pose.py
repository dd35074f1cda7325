"""The pose estimator's main side (issue 15 part 2): BlazePose 33 -> the project's 23 keypoints,
the hand matching, the worker's raw file, the model check, and the errors when the isolated
venv is missing or broken. None of this needs mediapipe; test_pose_cli.py runs the real one."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from extract import pose as P
from pipeline.skeleton import COCO17, HAND_21_INDEX, KEYPOINTS, SkeletonError

COL = {name: i for i, name in enumerate(KEYPOINTS)}


def fake_pose(T: int = 3, vis: float = 0.8) -> np.ndarray:
    """(T, 33, 3): landmark j of frame t at x = 10 j + t, y = 500 + j, visibility ``vis``;
    the elbows 40 px from the wrists, so the hand gate is 20 px."""
    pose = np.zeros((T, 33, 3), np.float32)
    for t in range(T):
        for j in range(33):
            pose[t, j] = (10 * j + t, 500 + j, vis)
    pose[:, 13, :2] = pose[:, 15, :2] + (0, -40)  # left elbow above the left wrist
    pose[:, 14, :2] = pose[:, 16, :2] + (0, -40)
    return pose


def fake_hand(wrist_xy, offset: float = 0.0) -> np.ndarray:
    """(21, 3): landmark i at wrist + (offset + i, 2 i); score 0.9."""
    h = np.zeros((21, 3), np.float32)
    for i in range(21):
        h[i] = (wrist_xy[0] + offset + i, wrist_xy[1] + 2 * i, 0.9)
    return h


def test_every_coco_joint_is_the_blazepose_landmark_of_the_same_name():
    assert list(P.COCO_FROM_BLAZEPOSE) == list(COCO17)
    for name, j in P.COCO_FROM_BLAZEPOSE.items():
        assert P.BLAZEPOSE33[j] == name
    assert len(P.BLAZEPOSE33) == 33 and len(set(P.BLAZEPOSE33)) == 33
    # the fallback hand points are BlazePose's index and pinky landmarks of the same side
    for side, points in P.HAND_FALLBACK.items():
        assert P.BLAZEPOSE33[points["index_mcp"]] == f"{side}_index"
        assert P.BLAZEPOSE33[points["pinky_mcp"]] == f"{side}_pinky"


def test_to_keypoints_body_and_fallback_hands():
    pose = fake_pose(T=3, vis=0.8)
    pose[1, 27, 2] = 1.7  # an out-of-range visibility is clipped
    found = np.array([True, True, False])
    kp = P.to_keypoints(pose, found)
    assert kp.shape == (3, len(KEYPOINTS), 3) and kp.dtype == np.float32
    for name in COCO17:  # reference: the landmark of the same name, by index lookup
        j = P.BLAZEPOSE33.index(name)
        np.testing.assert_array_equal(kp[:2, COL[name], :2], pose[:2, j, :2])
    assert kp[0, COL["nose"], 2] == pytest.approx(0.8)
    assert kp[1, COL["left_ankle"], 2] == 1.0
    # fallback: BlazePose's index/pinky at half the visibility; no middle fingertip
    np.testing.assert_array_equal(kp[0, COL["left_index_mcp"], :2], pose[0, 19, :2])
    np.testing.assert_array_equal(kp[0, COL["right_pinky_mcp"], :2], pose[0, 18, :2])
    assert kp[0, COL["left_index_mcp"], 2] == pytest.approx(0.8 * P.FALLBACK_SCORE)
    for side in ("left", "right"):
        assert (kp[:, COL[f"{side}_middle_tip"]] == 0).all()
    assert (kp[2] == 0).all(), "a frame without a person is all zeros"


def test_a_joint_with_score_zero_has_no_position():
    pose = fake_pose(T=1)
    pose[0, 0, 2] = 0.0
    kp = P.to_keypoints(pose, np.array([True]))
    assert (kp[0, COL["nose"]] == 0).all()


def test_hands_are_matched_to_the_nearest_wrists_and_gated():
    pose = fake_pose(T=4)
    hands = np.zeros((4, 2, 21, 3), np.float32)
    count = np.array([2, 1, 1, 0], np.int8)
    # frame 0: both hands, listed right first; frame 1: one hand near the left wrist;
    # frame 2: one hand 100 px from any wrist (a face, say): not taken
    hands[0, 0] = fake_hand(pose[0, 16, :2], offset=3)
    hands[0, 1] = fake_hand(pose[0, 15, :2], offset=-3)
    hands[1, 0] = fake_hand(pose[1, 15, :2], offset=5)
    hands[2, 0] = fake_hand(pose[2, 15, :2] + (0, 100))
    kp = P.to_keypoints(pose, np.ones(4, bool), hands, count)
    for p, i in HAND_21_INDEX.items():
        np.testing.assert_array_equal(kp[0, COL[f"right_{p}"], :2], hands[0, 0, i, :2])
        np.testing.assert_array_equal(kp[0, COL[f"left_{p}"], :2], hands[0, 1, i, :2])
        np.testing.assert_array_equal(kp[1, COL[f"left_{p}"], :2], hands[1, 0, i, :2])
    # a Hands point carries the wrist's visibility, not the fallback's half
    assert kp[0, COL["left_middle_tip"], 2] == pytest.approx(0.8)
    # frame 1: the right hand falls back; frame 2: both fall back (the far hand is refused)
    assert kp[1, COL["right_middle_tip"], 2] == 0
    np.testing.assert_array_equal(kp[2, COL["left_index_mcp"], :2], pose[2, 19, :2])
    assert kp[2, COL["left_middle_tip"], 2] == 0
    src = P.hand_source(pose, np.ones(4, bool), hands, count)
    assert src.tolist() == [[True, True], [True, False], [False, False], [False, False]]


def test_to_keypoints_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match=r"\(frames, 33, 3\)"):
        P.to_keypoints(np.zeros((2, 17, 3)), np.ones(2, bool))


def write_raw(path, T=4, fps=25.0, **over):
    arrays = dict(pose=fake_pose(T), found=np.ones(T, bool),
                  hands=np.zeros((T, 2, 21, 3), np.float32), hand_count=np.zeros(T, np.int8),
                  size=np.array([160, 120], np.int32), fps=np.array([fps], np.float32))
    arrays.update(over)
    np.savez(path, **arrays)
    return path


def test_read_raw_gives_a_checked_skeleton(tmp_path):
    sk = P.read_raw(write_raw(tmp_path / "raw.npz"), "mediapipe-0.10.21 test")
    assert sk.keypoints.shape == (4, 23, 3) and (sk.width, sk.height, sk.fps) == (160, 120, 25.0)
    assert sk.source == "mediapipe-0.10.21 test"
    assert P.detected_fraction(sk) == 1.0
    bad = write_raw(tmp_path / "bad.npz", pose=np.full((4, 33, 3), np.nan, np.float32))
    with pytest.raises(SkeletonError, match="v.mp4: keypoints must be finite"):
        P.read_raw(bad, "x", "v.mp4")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(P.PoseVideoError, match="unreadable worker output"):
        P.read_raw(tmp_path / "junk.npz", "x")


def test_recipe_and_source_name_the_models_and_their_sha256():
    r = P.recipe(True, 1280, 0.5, 0.5)
    assert r.startswith("mediapipe-0.10.21 blazepose-full hands=mediapipe")
    src = P.source_string(r, True)
    for name in P.MODEL_FILES:
        assert f"{name} sha256={P.MODEL_FILES[name].sha256}" in src
    assert "hand_landmark" not in P.source_string(P.recipe(False, 0, 0.5, 0.5), False)


def test_model_files_are_checked_by_sha256(tmp_path):
    with pytest.raises(P.PoseError, match="pose_landmark_full.tflite: .* not found"):
        P.check_models(tmp_path, hands=False)
    for m in P.MODEL_FILES.values():
        (tmp_path / m.relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / m.relpath).write_bytes(b"a different model")
    with pytest.raises(P.PoseError) as e:
        P.check_models(tmp_path, hands=True)
    assert "sha256" in str(e.value) and "make pose-deps" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_missing_pose_venv_is_one_line_naming_the_fix(tmp_path):
    est = P.PoseEstimator(venv=tmp_path / "nowhere")
    with pytest.raises(P.PoseError, match="run 'make pose-deps'"):
        est.start()


def test_a_venv_without_mediapipe_is_one_line(tmp_path):
    """The worker started by an interpreter that has no mediapipe (this venv's) says so."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").symlink_to(sys.executable)
    with P.PoseEstimator(venv=tmp_path / "venv") as est:
        with pytest.raises(P.PoseError) as e:
            est.start()
    msg = str(e.value)
    assert "cannot import mediapipe" in msg and "make pose-deps" in msg and "\n" not in msg


FAKE_WORKER = r'''
import json, os, sys, time
import numpy as np
out = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
out.write(json.dumps({"hello": {"mediapipe": "0.10.21", "modules": "/nowhere"}}) + "\n")
for line in sys.stdin:
    req = json.loads(line)
    name = os.path.basename(req["video"])
    if name.startswith("hang"):
        time.sleep(60)
    if name.startswith("die"):
        sys.stderr.write("Segmentation fault in the model\n")
        sys.stderr.flush()
        os._exit(3)
    if name.startswith("garbage"):
        out.write("not json\n")
        continue
    if name.startswith("error"):
        out.write(json.dumps({"error": "OpenCV cannot open the video " + name}) + "\n")
        continue
    T = 3
    pose = np.zeros((T, 33, 3), np.float32)
    pose[..., 0], pose[..., 1], pose[..., 2] = 50, 40, 0.9
    with open(req["out"], "wb") as f:
        np.savez(f, pose=pose, found=np.ones(T, bool), hands=np.zeros((T, 2, 21, 3), np.float32),
                 hand_count=np.zeros(T, np.int8), size=np.array([160, 120], np.int32),
                 fps=np.array([25.0], np.float32))
    out.write(json.dumps({"ok": True, "frames": T, "seconds": 0.01}) + "\n")
'''


@pytest.fixture
def fake_estimator(tmp_path, monkeypatch):
    """A PoseEstimator whose worker is a stand-in (no mediapipe): its behaviour per video is
    chosen by the video's name."""
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bindir / "python").chmod(0o755)
    monkeypatch.setattr(P, "WORKER", worker)
    monkeypatch.setattr(P, "check_models", lambda modules, hands: {})
    with P.PoseEstimator(venv=tmp_path / "venv", timeout_s=2.0) as est:
        yield est


def test_the_worker_protocol_survives_errors_deaths_and_hangs(fake_estimator, tmp_path):
    est = fake_estimator
    sk, ans = est.estimate(tmp_path / "ok.mp4", tmp_path / "a.tmp")
    assert sk.keypoints.shape == (3, 23, 3) and ans["frames"] == 3
    assert not (tmp_path / "a.tmp").exists(), "the raw output is removed"
    assert sk.source == est.source and "pose_landmark_full sha256=" in sk.source
    first = est._proc.pid
    with pytest.raises(P.PoseVideoError, match="OpenCV cannot open the video error.mp4"):
        est.estimate(tmp_path / "error.mp4", tmp_path / "b.tmp")
    assert est._proc.pid == first, "a video's error leaves the worker running"
    with pytest.raises(P.PoseVideoError, match=r"died \(exit code 3\): Segmentation fault"):
        est.estimate(tmp_path / "die.mp4", tmp_path / "c.tmp")
    with pytest.raises(P.PoseVideoError, match="not JSON"):
        est.estimate(tmp_path / "garbage.mp4", tmp_path / "d.tmp")
    with pytest.raises(P.PoseVideoError, match="no answer within 2 s"):
        est.estimate(tmp_path / "hang.mp4", tmp_path / "e.tmp")
    # after each death a fresh worker takes the next video
    sk, _ = est.estimate(tmp_path / "ok2.mp4", tmp_path / "f.tmp")
    assert sk.frames == 3 and est._proc.pid != first
