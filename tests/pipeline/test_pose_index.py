"""The pose index `cprclip pose` writes beside its skeleton files, and the loader's join
(issue 15 part 2): a round trip, a moved dataset, the manifest's own column winning, a stale
entry, and an index that is not ours as one line."""
from __future__ import annotations

import csv
import logging
import os
import shutil

import pytest

from pipeline.manifest import (POSE_INDEX_COLUMNS, ManifestError, default_pose_dir, load_manifest,
                               pose_entry, pose_index_path, read_pose_index, write_pose_index)

HEADER = ["video_id", "path", "take_id", "view", "participant", "split", "labels", "flow"]


def dataset(root, skeleton_col: dict[str, str] | None = None):
    """A manifest of two videos (empty files: the loader checks that they exist)."""
    (root / "videos").mkdir(parents=True)
    rows = []
    for v in (1, 2):
        vid = f"t0_v{v}"
        (root / "videos" / f"{vid}.mp4").write_bytes(b"video %d" % v)
        rows.append([vid, f"videos/{vid}.mp4", "t0", v, "p1", "train", "4", ""])
    header = HEADER
    if skeleton_col is not None:
        header = HEADER + ["skeleton"]
        rows = [r + [skeleton_col.get(r[0], "")] for r in rows]
    path = root / "manifest.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def estimate(manifest, vid: str, recipe: str = "mediapipe-0.10.21 test"):
    """What `cprclip pose` leaves for one video: a file in pose/ and its index entry."""
    pose_dir = default_pose_dir(manifest)
    pose_dir.mkdir(exist_ok=True)
    dst = pose_dir / f"{vid}.npz"
    dst.write_bytes(b"npz")
    return pose_entry(vid, dst, recipe, manifest.parent / "videos" / f"{vid}.mp4")


def test_round_trip_and_the_loader_fills_the_skeleton(tmp_path):
    m = dataset(tmp_path / "ds")
    entries = [estimate(m, "t0_v2"), estimate(m, "t0_v1")]
    path = write_pose_index(default_pose_dir(m), entries)
    assert path == pose_index_path(tmp_path / "ds" / "pose")
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(POSE_INDEX_COLUMNS)
    assert [ln.split(",")[:2] for ln in lines[1:]] == [["t0_v1", "t0_v1.npz"],
                                                       ["t0_v2", "t0_v2.npz"]]
    assert read_pose_index(default_pose_dir(m)) == {e.video_id: e for e in entries}
    recs = load_manifest(m)
    assert [r.skeleton for r in recs] == [tmp_path / "ds/pose/t0_v1.npz",
                                         tmp_path / "ds/pose/t0_v2.npz"]
    # the manifest is not touched, and a loader told not to use the index does not
    assert "pose" not in m.read_text()
    from pipeline.manifest import parse_manifest

    assert all(r.skeleton is None for r in parse_manifest(m, use_pose_index=False)[0])


def test_a_moved_dataset_keeps_its_skeletons(tmp_path):
    m = dataset(tmp_path / "a")
    write_pose_index(default_pose_dir(m), [estimate(m, "t0_v1")])
    shutil.move(tmp_path / "a", tmp_path / "b")
    # moving keeps mtimes (same file system), so the entry is still current
    recs = load_manifest(tmp_path / "b" / "manifest.csv")
    assert recs[0].skeleton == tmp_path / "b/pose/t0_v1.npz" and recs[1].skeleton is None


def test_the_manifest_column_wins_over_the_index(tmp_path):
    m = dataset(tmp_path / "ds", {"t0_v1": "own/t0_v1.npz"})
    write_pose_index(default_pose_dir(m), [estimate(m, "t0_v1"), estimate(m, "t0_v2")])
    recs = load_manifest(m, check_files=False)
    assert recs[0].skeleton == (tmp_path / "ds/own/t0_v1.npz").resolve()
    assert recs[1].skeleton == tmp_path / "ds/pose/t0_v2.npz"


def test_a_changed_video_is_not_given_its_old_skeleton(tmp_path, caplog):
    m = dataset(tmp_path / "ds")
    write_pose_index(default_pose_dir(m), [estimate(m, "t0_v1")])
    video = tmp_path / "ds/videos/t0_v1.mp4"
    video.write_bytes(b"another take, longer")
    os.utime(video, ns=(1, 1))
    with caplog.at_level(logging.WARNING):
        recs = load_manifest(m)
    assert recs[0].skeleton is None
    assert "rerun 'cprclip pose'" in caplog.text and "t0_v1" in caplog.text


@pytest.mark.parametrize("text,problem", [
    ("video_id,flow,recipe,source,source_size,source_mtime_ns\n", "not a pose index"),
    (",".join(POSE_INDEX_COLUMNS) + "\nt0_v1,../../etc/passwd,r,../videos/t0_v1.mp4,1,1\n",
     "row 2"),
    (",".join(POSE_INDEX_COLUMNS) + "\nt0_v1,t0_v1.npz,r,x,big,1\n", "row 2"),
])
def test_an_index_that_is_not_ours_is_one_line(tmp_path, text, problem):
    m = dataset(tmp_path / "ds")
    default_pose_dir(m).mkdir()
    pose_index_path(default_pose_dir(m)).write_text(text)
    with pytest.raises(ManifestError) as e:
        load_manifest(m)
    msg = str(e.value)
    assert problem in msg and "index.csv" in msg and "rerun 'cprclip pose'" in msg
    assert "\n" not in msg
