"""The frame-dataset writer (`cprclip frames`) and reader, bad metadata rows included."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from frames.config import FramesConfig
from frames.layout import (COLUMNS, FrameDataError, class_folder, load_frame_dataset,
                           parse_metadata)
from frames.writer import frame_indices, write_frames
from pipeline.cli import main as cli


def test_frame_indices_are_even_seeded_and_order_free():
    a = frame_indices(80, 8, seed=0, video_id="v1")
    assert len(a) == 8 and np.all(np.diff(a) == 10)  # evenly spaced: one offset per video
    assert 0 <= a[0] < 10 and a[-1] < 80
    assert np.array_equal(a, frame_indices(80, 8, 0, "v1"))  # deterministic
    others = {int(frame_indices(80, 8, s, v)[0]) for s in range(3) for v in ("v1", "v2", "v3")}
    assert len(others) > 3  # the offset follows (seed, video_id)
    assert frame_indices(5, 8, 0, "v").tolist() == [0, 1, 2, 3, 4]  # short video: every frame
    assert frame_indices(0, 8, 0, "v").size == 0
    b = frame_indices(81, 4, 1, "x")  # floor((i + u) * 81 / 4): steps of 20 or 21
    assert set(np.diff(b).tolist()) <= {20, 21} and b[0] <= 20


def _cfg(manifest, root, **kw):
    return FramesConfig(**{"manifest": str(manifest), "frames_dir": str(root),
                           "frames_per_video": 3, **kw})


def test_writer_layout_metadata_and_resume(frames_manifest, tmp_path, caplog):
    root = tmp_path / "frames"
    s = write_frames(_cfg(frames_manifest, root))
    assert (s.videos, s.written, s.skipped, s.failed, s.images, s.classes) == (16, 16, 0, 0, 48, 4)
    rows = list(csv.DictReader((root / "metadata.csv").open()))
    assert list(rows[0]) == list(COLUMNS)
    assert {r["class"] for r in rows} == {class_folder(k) for k in range(4)}
    assert class_folder(13) == "13_random_position_pressing"
    assert "p2_mix" not in {r["video_id"] for r in rows}  # composite videos are left out
    r0 = rows[0]
    assert r0["path"] == f"{r0['class']}/{r0['video_id']}_{int(r0['frame_id']):05d}.jpg"
    assert (root / r0["path"]).is_file()
    assert {r["split"] for r in rows} == {"train", "val"}
    assert {r["participant"] for r in rows if r["split"] == "val"} == {"p2"}
    ds = load_frame_dataset(root)
    assert len(ds.rows) == 48 and ds.classes == tuple(class_folder(k) for k in range(4))
    assert ds.captions[1].startswith("The error is overlap hands.")
    assert len(ds.split("val")) == 12
    # the pixels are the video's frame frame_id (JPEG of noise: closest, not exact)
    from extract.decoders import read_frames
    from frames.model import read_image

    every = read_frames(frames_manifest.parent / "videos" / f"{r0['video_id']}.mp4",
                        np.arange(12)).astype(int)
    err = np.abs(every - read_image(root / r0["path"]).astype(int)).mean(axis=(1, 2, 3))
    assert int(np.argmin(err)) == int(r0["frame_id"]), err
    # a rerun skips every video; a changed recipe rewrites and removes the stale images
    again = write_frames(_cfg(frames_manifest, root))
    assert (again.written, again.skipped, again.images) == (0, 16, 48)
    two = write_frames(_cfg(frames_manifest, root, seed=5, frames_per_video=2))
    assert (two.written, two.images) == (16, 32)
    on_disk = {p.relative_to(root).as_posix() for p in root.glob("*/*.jpg")}
    assert on_disk == {r["path"] for r in csv.DictReader((root / "metadata.csv").open())}
    assert json.loads((root / "frames.json").read_text())["recipe"]["seed"] == 5


def test_writer_records_bad_videos_and_goes_on(frames_manifest, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(frames_manifest.parent, data)
    (data / "videos" / "p1_c00_1.mp4").write_bytes(b"not a video at all")
    s = write_frames(_cfg(data / "manifest.csv", tmp_path / "frames"))
    assert s.failed == 1 and s.images == 45
    fails = list(csv.DictReader((tmp_path / "frames" / "failures.csv").open()))
    assert [f["video_id"] for f in fails] == ["p1_c00_1"]
    assert fails[0]["reason"] and "\n" not in fails[0]["reason"]


def test_writer_refuses_a_users_dataset(frames_manifest, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "metadata.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(ValueError, match="did not write"):
        write_frames(_cfg(frames_manifest, tmp_path / "mine"))


# --- a user's dataset: every bad row is named by file, row and field ------------------------

HEADER = ",".join(COLUMNS) + "\n"


def _user_dataset(tmp_path, extra_rows=(), header=HEADER):
    root = tmp_path / "user"
    for c in ("1", "2", "10"):
        (root / c).mkdir(parents=True)
        for f in ("a.jpg", "b.jpg"):
            (root / c / f).write_bytes(b"x")
    rows = ["1/a.jpg,1,vid1,0,a wave,train,p1", "1/b.jpg,1,vid1,5,a wave,val,p2",
            "2/a.jpg,2,vid2,0,a nod,train,p1", "10/a.jpg,10,vid3,3,a shrug,train,p1",
            *extra_rows]
    (root / "metadata.csv").write_text(header + "".join(r + "\n" for r in rows))
    return root


def test_a_users_dataset_reads_with_natural_class_order(tmp_path):
    ds = load_frame_dataset(_user_dataset(tmp_path))
    assert ds.classes == ("1", "2", "10")  # "2" before "10"
    assert ds.captions == ("a wave", "a nod", "a shrug")
    assert [ds.label(r) for r in ds.rows] == [0, 0, 1, 2]


@pytest.mark.parametrize("row,field,fragment", [
    ("2/missing.jpg,2,v,0,a nod,train,p1", "path", "not found"),
    ("1/b.jpg,2,v,0,a nod,train,p1", "path", "not an image directly inside its class folder"),
    ("/etc/passwd,2,v,0,a nod,train,p1", "path", "is absolute"),
    ("2/../../x.jpg,2,v,0,a nod,train,p1", "path", "not an image directly inside"),
    ("2/b.txt,2,v,0,a nod,train,p1", "path", "not an image file"),
    ("1/a.jpg,1,v,0,a wave,train,p1", "path", "repeats row 2"),
    (",2,v,0,a nod,train,p1", "path", "empty"),
    ("2/b.jpg,2,,0,a nod,train,p1", "video_id", "empty"),
    ("2/b.jpg,2,v,-1,a nod,train,p1", "frame_id", "not an integer"),
    ("2/b.jpg,2,v,x,a nod,train,p1", "frame_id", "not an integer"),
    ("2/b.jpg,2,v,0,,train,p1", "caption", "empty"),
    ("2/b.jpg,2,v,0,a bow,train,p1", "caption", "differs from row 4"),
    ("2/b.jpg,2,v,0,a nod,holdout,p1", "split", "'holdout' is not one of"),
    ("2/b.jpg,,v,0,a nod,train,p1", "class", "empty"),
])
def test_each_bad_row_names_file_row_and_field(tmp_path, row, field, fragment):
    root = _user_dataset(tmp_path, [row])
    ds, errors = parse_metadata(root)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{root / 'metadata.csv'}:row 6: field '{field}'"), errors[0]
    assert fragment in errors[0] and "\n" not in errors[0]
    assert len(ds.rows) == 4  # the good rows survive
    with pytest.raises(FrameDataError, match="row 6"):
        load_frame_dataset(root)


@pytest.mark.parametrize("header,rows,fragment", [
    ("path,class,video_id\n", [], "missing column(s) frame_id, caption, split"),
    (HEADER, ["2/b.jpg,2,v,0,a nod,train,p1,extra"], "row 6: 8 fields but the header has 7"),
    (HEADER, ['2/b.jpg,2,v,0,"a nod,train,p1', "2/b.jpg,2,v,0,a nod,train,p1"],
     "row 6: a field runs over lines 6-7"),
    ("", [], "empty file"),
])
def test_whole_file_problems(tmp_path, header, rows, fragment):
    root = _user_dataset(tmp_path, rows, header=header)
    if not header:
        (root / "metadata.csv").write_text("")
    with pytest.raises(FrameDataError) as e:
        load_frame_dataset(root)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_missing_folder_and_metadata(tmp_path):
    with pytest.raises(FrameDataError, match="folder not found"):
        load_frame_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameDataError, match="frame metadata not found"):
        load_frame_dataset(tmp_path / "empty")


def test_cli_writes_then_checks(frames_manifest, tmp_path, capsys):
    root = tmp_path / "cli_frames"
    base = ["--config", "configs/synthetic.toml", f"manifest={frames_manifest}",
            f"frames_dir={root}", "frames_per_video=2"]
    assert cli(["frames", *base]) == 0
    assert "32 images of 16 videos in 4 classes" in capsys.readouterr().out
    assert cli(["frames", "--check", *base]) == 0
    out = capsys.readouterr().out
    assert "32 good rows, 0 bad, 4 classes" in out and "val   8 images, participants p2" in out
    with (root / "metadata.csv").open("a") as f:
        f.write("00_correct/nope.jpg,00_correct,v,0,x,train,p1\n")
    assert cli(["frames", "--check", *base]) == 1
    assert cli(["frames", *base, "frames_per_video=0"]) == 2  # a config error, one line
