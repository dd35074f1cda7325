"""`cprclip import-alphapose` (issue 15): AlphaPose's JSON results in each keypoint layout ->
skeleton files; one person per frame; frame numbers; one-line errors naming file and detection."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from extract.alphapose import (LAYOUTS, AlphaPoseError, ImportAlphaPoseConfig, import_alphapose,
                               keypoint_map, read_alphapose, to_skeleton)
from pipeline.cli import main as cli_main
from pipeline.config import ConfigError
from pipeline.skeleton import COCO17, KEYPOINTS, NUM_KEYPOINTS, read_skeleton

K = {n: i for i, n in enumerate(KEYPOINTS)}
# Where each layout keeps the 21-point hands (left, right): written out here from the layouts'
# definitions, independently of extract.alphapose.LAYOUTS.
HANDS = {17: None, 26: None, 133: (91, 112), 136: (94, 115)}


def person(k: int, frame: int, shift: float = 0.0) -> np.ndarray:
    """(k, 3) keypoints whose values say what they are: x = 1000 * frame + index + shift,
    y = index, score 0.5 + index / 1000 (so a wrong mapping shows)."""
    idx = np.arange(k, dtype=np.float64)
    return np.stack([1000.0 * frame + idx + shift, idx, 0.5 + idx / 1000.0], 1)


def detection(k, frame, score=1.0, image_id=None, shift=0.0, **extra) -> dict:
    d = {"image_id": f"{frame}.jpg" if image_id is None else image_id, "category_id": 1,
         "keypoints": person(k, frame, shift).ravel().tolist(), "score": score,
         "box": [0, 0, 10, 10]}
    d.update(extra)
    return d


def write_json(path: Path, dets) -> Path:
    path.write_text(json.dumps(dets))
    return path


@pytest.mark.parametrize("k", [17, 26, 133, 136])
def test_each_layout_maps_to_our_23_keypoints(k):
    m = keypoint_map(k)
    assert m.shape == (NUM_KEYPOINTS,)
    np.testing.assert_array_equal(m[:17], np.arange(17))  # COCO-17 first in every layout
    hands = HANDS[k]
    if hands is None:
        assert (m[17:] == -1).all()
    else:
        left, right = hands
        # index MCP, pinky MCP and middle fingertip of the 21-point hand: 5, 17, 12
        assert m[17:].tolist() == [left + 5, left + 17, left + 12, right + 5, right + 17,
                                   right + 12]
    assert set(LAYOUTS) == set(HANDS)


@pytest.mark.parametrize("k", [17, 26, 133, 136])
def test_import_of_a_generated_result_file(tmp_path, k):
    dets = [detection(k, 0, score=2.0), detection(k, 0, score=3.0, shift=0.25),  # best: 2nd
            detection(k, 2, score=1.0)]  # frame 1: nobody found
    src = write_json(tmp_path / "v1.json", dets)
    out = tmp_path / "sk" / "v1.npz"
    written, errors = import_alphapose(ImportAlphaPoseConfig(json=str(src), out=str(out),
                                                             width=640, height=480, fps=30))
    assert written == [out] and errors == []
    sk = read_skeleton(out)
    assert (sk.width, sk.height, sk.fps, sk.source) == (640, 480, 30.0, "alphapose")
    kp = sk.keypoints
    assert kp.shape == (3, NUM_KEYPOINTS, 3)
    assert (kp[1] == 0).all()
    m = keypoint_map(k)
    for t, shift in ((0, 0.25), (2, 0.0)):
        expect = person(k, t, shift)
        for j, name in enumerate(KEYPOINTS):
            if m[j] < 0:
                assert (kp[t, j] == 0).all(), name
            else:
                np.testing.assert_allclose(kp[t, j], expect[m[j]], rtol=0, atol=1e-3)
    # the body is COCO's own order
    np.testing.assert_allclose(kp[2, :17, 1], np.arange(17))
    assert KEYPOINTS[:17] == COCO17


def test_frame_numbers_from_image_ids(tmp_path):
    dets = [detection(17, 0, image_id="img_00003.jpg"), detection(17, 0, image_id="img_00001.jpg")]
    got = read_alphapose(write_json(tmp_path / "a.json", dets), first_frame=1)
    assert [d.frame for d in got] == [2, 0]
    dets = [detection(17, 0, image_id=7), detection(17, 0, image_id="clip/000012.png")]
    assert [d.frame for d in read_alphapose(write_json(tmp_path / "b.json", dets))] == [7, 12]
    # No numbers at all: frames in order of first appearance.
    dets = [detection(17, 0, image_id=n) for n in ("a.jpg", "b.jpg", "a.jpg", "c.jpg")]
    assert [d.frame for d in read_alphapose(write_json(tmp_path / "c.json", dets))] == [0, 1, 0, 2]


def test_person_track_keeps_one_track(tmp_path):
    dets = [detection(17, 0, score=5.0, idx=1), detection(17, 0, score=1.0, idx=2, shift=0.5),
            detection(17, 1, score=0.5, idx=[2.0], shift=0.5), detection(17, 2, score=4.0, idx=1)]
    parsed = read_alphapose(write_json(tmp_path / "t.json", dets))
    kp, info = to_skeleton(parsed, 3, "track", -1)
    assert info["track"] == 1 and info["kept"] == 2  # the track with the highest total score
    assert (kp[1] == 0).all() and kp[0, 0, 0] == pytest.approx(0.0)
    kp, info = to_skeleton(parsed, 3, "track", 2)
    assert info["kept"] == 2 and kp[0, 0, 0] == pytest.approx(0.5) and (kp[2] == 0).all()
    best, _ = to_skeleton(parsed, 3, "best")
    assert best[1, 0, 0] == pytest.approx(1000.5)
    no_idx = read_alphapose(write_json(tmp_path / "n.json", [detection(17, 0)]))
    with pytest.raises(AlphaPoseError, match="person=track needs"):
        to_skeleton(no_idx, 1, "track", -1, "n.json")


def test_scores_are_clipped_and_unfound_joints_zeroed(tmp_path):
    d = detection(17, 0)
    d["keypoints"][2] = 1.3  # nose score above 1
    d["keypoints"][5] = 0.0  # left eye score 0 -> not found
    kp, _ = to_skeleton(read_alphapose(write_json(tmp_path / "s.json", [d])), 1)
    assert kp[0, K["nose"], 2] == 1.0 and (kp[0, K["left_eye"]] == 0).all()


def test_detections_past_the_video_are_left_out(tmp_path, lossless_video):
    video, frames = lossless_video  # 24 frames, 64x36, 25 fps
    src = write_json(tmp_path / "v.json", [detection(17, 3), detection(17, 30)])
    written, errors = import_alphapose(ImportAlphaPoseConfig(json=str(src),
                                                             out=str(tmp_path / "v.npz"),
                                                             video=str(video)))
    assert errors == []
    sk = read_skeleton(written[0])
    assert sk.keypoints.shape[0] == len(frames) and (sk.width, sk.height) == (64, 36)
    assert sk.fps == pytest.approx(25.0) and sk.keypoints[3, 0, 2] > 0


@pytest.mark.parametrize("content,fragment", [
    ("{not json", "not JSON (line 1"),
    (json.dumps({"bodies": []}), "expected a JSON list of detections"),
    (json.dumps([detection(17, 0), 5]), "detection 1: expected an object"),
    (json.dumps([detection(17, 0), {**detection(17, 1), "keypoints": [1, 2]}]),
     "detection 1: 2 keypoint values are not 3 x one of 17, 26, 133, 136"),
    (json.dumps([detection(17, 0), detection(26, 1)]), "detection 1: 26 keypoints, but"),
    (json.dumps([{**detection(17, 0), "keypoints": ["a"] * 51}]), "detection 0: 'keypoints' must"),
    (json.dumps([{**detection(17, 0), "image_id": None}]), "detection 0: 'image_id'"),
    (json.dumps([{**detection(17, 0), "score": "high"}]), "detection 0: 'score'"),
    (json.dumps([detection(17, 0, idx="x")]), "detection 0: 'idx'"),
    (json.dumps([detection(17, 0), detection(17, 0, image_id="last.jpg")]),
     "detection 1: image_id 'last.jpg' has no frame number"),
])
def test_malformed_files_are_one_line_naming_file_and_detection(tmp_path, content, fragment):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(AlphaPoseError) as e:
        read_alphapose(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and fragment in msg and "\n" not in msg


def test_nan_keypoints_are_refused(tmp_path):
    p = tmp_path / "nan.json"
    p.write_text(json.dumps([detection(17, 0)]).replace("0.5,", "NaN,", 1))
    with pytest.raises(AlphaPoseError, match="detection 0: 'keypoints' holds NaN"):
        read_alphapose(p)


def test_config_needs_a_size_or_a_video():
    with pytest.raises(ConfigError, match="'json': required"):
        ImportAlphaPoseConfig(out="x.npz", width=1, height=1)
    with pytest.raises(ConfigError, match="'video'"):
        ImportAlphaPoseConfig(json="a.json", out="x.npz")
    with pytest.raises(ConfigError, match="'person'"):
        ImportAlphaPoseConfig(json="a.json", out="x.npz", width=1, height=1, person="all")


def test_cli_imports_a_folder_and_names_the_bad_file(tmp_path, capsys):
    src = tmp_path / "alphapose"
    src.mkdir()
    write_json(src / "v1.json", [detection(136, 0), detection(136, 1)])
    (src / "v2.json").write_text("[")
    out = tmp_path / "skeleton"
    rc = cli_main(["import-alphapose", f"json={src}", f"out={out}", "width=320", "height=240"])
    assert rc == 1
    got = capsys.readouterr()
    assert got.out.strip() == str(out / "v1.npz")
    errors = [ln for ln in got.err.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and f"{src / 'v2.json'}: not JSON" in errors[0]
    assert read_skeleton(out / "v1.npz").keypoints.shape == (2, NUM_KEYPOINTS, 3)
    assert not (out / "v2.npz").exists()
    write_json(src / "v2.json", [detection(17, 0)])
    assert cli_main(["import-alphapose", f"json={src}", f"out={out}", "width=320",
                     "height=240"]) == 0
    assert cli_main(["import-alphapose", f"json={src / 'v2.json'}", f"out={out}",
                     "width=320", "height=240"]) == 0  # a folder as out: <stem>.npz in it
