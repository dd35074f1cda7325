"""`cprclip pose` (issue 15 part 2): its config, and the real CLI with MediaPipe in .venv-pose on
one tiny rendered video of the synthetic rescuer plus one broken video.

The end-to-end test needs `.venv-pose` (`make pose-deps`, ~30 s); without it it is skipped with
that reason. CI's .ci/run makes it before `make test`."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from extract.pose import MODEL_FILES, venv_python
from extract.pose_cli import PoseConfig
from pipeline.config import ConfigError, load_stage_config

ROOT = Path(__file__).resolve().parents[2]
HEADER = ["video_id", "path", "take_id", "view", "participant", "split", "labels", "flow"]


@pytest.mark.parametrize("override,key", [
    ("workers=0", "workers"), ("max_side=-1", "max_side"), ("min_detection=1.5", "min_detection"),
    ("min_tracking=nan", "min_tracking"), ("timeout_s=0", "timeout_s"), ("videos=some", "videos"),
    ("hands=maybe", "hands"),
])
def test_bad_pose_settings_are_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_stage_config(PoseConfig, "pose", None, [override])
    assert f"'{key}'" in str(e.value) and "\n" not in str(e.value)


def test_the_shipped_configs_have_a_pose_section():
    for name in ("synthetic", "cpr_coach"):
        cfg = load_stage_config(PoseConfig, "pose", ROOT / "configs" / f"{name}.toml")
        assert cfg.venv == ".venv-pose" and cfg.videos == "missing"


def tiny_dataset(root):
    """One rendered take of the rescuer (front view, 12 frames) and one broken video file."""
    from extract_helpers import write_video
    from synth.render import render_clip

    frames = render_clip((0,), 0, 1, seed=3, resolution=(160, 120), frames=12)
    write_video(root / "videos" / "t0_v1.mp4", frames, lossless=False)
    (root / "videos" / "t1_v1.mp4").write_bytes(b"not a video")
    path = root / "manifest.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow(["t0_v1", "videos/t0_v1.mp4", "t0", 1, "p1", "train", "0", ""])
        w.writerow(["t1_v1", "videos/t1_v1.mp4", "t1", 1, "p1", "train", "4", ""])
    return path


@pytest.mark.skipif(not venv_python(".venv-pose").is_file(),
                    reason="needs .venv-pose with mediapipe 0.10.21: run 'make pose-deps'")
def test_pose_cli_end_to_end(tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.manifest import load_manifest, read_pose_index
    from pipeline.skeleton import read_skeleton

    m = tiny_dataset(tmp_path / "ds")
    args = ["pose", "--config", str(ROOT / "configs" / "synthetic.toml"), f"manifest={m}",
            "hands=true"]  # the demo leaves Hands off (docs/pose.md); run the whole path here
    assert main(args) == 1  # the broken video failed; the run went on
    out = capsys.readouterr().out
    assert "pose: 1 estimated" in out and "1 failed" in out

    pose_dir = tmp_path / "ds" / "pose"
    sk = read_skeleton(pose_dir / "t0_v1.npz")
    assert sk.keypoints.shape == (12, 23, 3) and (sk.width, sk.height) == (160, 120)
    assert sk.fps == pytest.approx(25.0)
    assert sk.source.startswith("mediapipe-0.10.21 blazepose-full hands=mediapipe")
    assert f"pose_landmark_full sha256={MODEL_FILES['pose_landmark_full'].sha256}" in sk.source
    # the front view of the drawn rescuer is found (docs/pose.md), inside the frame
    found = sk.keypoints[..., 2].max(axis=1) > 0
    assert found.mean() > 0.5
    body = sk.keypoints[found][:, :17]
    seen = body[..., 2] > 0.5
    assert seen.any()
    xy = body[seen][:, :2]
    assert (xy > -20).all() and (xy[:, 0] < 180).all() and (xy[:, 1] < 140).all()

    rows = list(csv.reader((pose_dir / "failures.csv").open()))
    assert rows[0] == ["video_id", "path", "reason"] and [r[0] for r in rows[1:]] == ["t1_v1"]
    assert len(rows[1][2]) > 0 and "\n" not in rows[1][2]
    assert list(read_pose_index(pose_dir)) == ["t0_v1"]
    recs = {r.video_id: r for r in load_manifest(m)}
    assert recs["t0_v1"].skeleton == pose_dir / "t0_v1.npz" and recs["t1_v1"].skeleton is None

    # a rerun reuses the done video, tries the broken one again
    (tmp_path / "ds" / "videos" / "t1_v1.mp4").unlink()
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "pose: 0 estimated" in out and "1 reused" in out
    reason = list(csv.reader((pose_dir / "failures.csv").open()))[1][2]
    assert "not found" in reason
    np.testing.assert_array_equal(read_skeleton(pose_dir / "t0_v1.npz").keypoints, sk.keypoints)
