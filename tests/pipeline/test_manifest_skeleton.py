"""The manifest's optional `skeleton` column (issue 15): relative to the manifest, inside the
dataset folder, the file must exist when files are checked, kept by write_manifest, and old
manifests without the column still load."""
from __future__ import annotations

import pytest

from pipeline.manifest import (ManifestError, VideoRecord, load_manifest, parse_manifest,
                               write_manifest)

HEADER = "video_id,path,take_id,view,participant,split,labels,flow,skeleton\n"


def make(tmp_path, rows, header=HEADER):
    for f in ("a.mp4", "b.mp4"):
        (tmp_path / f).write_bytes(b"x")
    (tmp_path / "skeleton").mkdir(exist_ok=True)
    (tmp_path / "skeleton" / "v1.npz").write_bytes(b"x")
    p = tmp_path / "manifest.csv"
    p.write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return p


def test_skeleton_column_resolves_relative_to_the_manifest(tmp_path):
    recs = load_manifest(make(tmp_path, ["v1,a.mp4,t1,1,p1,train,4,,skeleton/v1.npz",
                                         "v2,b.mp4,t1,2,p1,train,4,,"]))
    assert recs[0].skeleton == (tmp_path / "skeleton" / "v1.npz").resolve()
    assert recs[1].skeleton is None


def test_old_manifests_without_the_column_still_load(tmp_path):
    p = make(tmp_path, ["v1,a.mp4,t1,1,p1,train,4,"],
             header="video_id,path,take_id,view,participant,split,labels,flow\n")
    assert load_manifest(p)[0].skeleton is None
    p = make(tmp_path, ["v1,a.mp4,t1,1,p1,train,4"],
             header="video_id,path,take_id,view,participant,split,labels\n")
    assert load_manifest(p)[0].skeleton is None


@pytest.mark.parametrize("value,fragment", [
    ("skeleton/nope.npz", "skeleton file"),
    ("../../outside.npz", "skeleton path '../../outside.npz' leaves the dataset folder"),
    ("/etc/passwd", "leaves the dataset folder"),
])
def test_a_bad_skeleton_is_one_line_naming_row_and_field(tmp_path, value, fragment):
    p = make(tmp_path, ["v1,a.mp4,t1,1,p1,train,4,,skeleton/v1.npz",
                        f"v2,b.mp4,t1,2,p1,train,4,,{value}"])
    records, errors = parse_manifest(p)
    assert len(errors) == 1 and [r.video_id for r in records] == ["v1"]
    assert f"{p}:row 3 (v2): " in errors[0] and fragment in errors[0] and "\n" not in errors[0]
    with pytest.raises(ManifestError, match="row 3"):
        load_manifest(p)


def test_a_missing_skeleton_file_is_fine_when_files_are_not_checked(tmp_path):
    p = make(tmp_path, ["v2,b.mp4,t1,2,p1,train,4,,skeleton/later.npz"])
    assert parse_manifest(p)[1]
    records, errors = parse_manifest(p, check_files=False)
    assert not errors and records[0].skeleton == (tmp_path / "skeleton" / "later.npz").resolve()


def test_write_manifest_keeps_the_skeleton(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"x")
    (tmp_path / "sk").mkdir()
    (tmp_path / "sk" / "a.npz").write_bytes(b"x")
    recs = [VideoRecord("a", tmp_path / "v" / "a.mp4", "t", 1, "p1", "train", (0,),
                        skeleton=tmp_path / "sk" / "a.npz")]
    write_manifest(tmp_path / "m.csv", recs)
    text = (tmp_path / "m.csv").read_text()
    assert "skeleton" in text.splitlines()[0].split(",") and ",sk/a.npz" in text
    assert load_manifest(tmp_path / "m.csv")[0].skeleton == (tmp_path / "sk" / "a.npz").resolve()
