"""The optional manifest columns ``rate`` (per minute) and ``depth`` (cm), issue 19: parsed into
VideoRecord, kept by the writer, and every bad value named on one line by file, row and field."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.manifest import (COLUMNS, MEASURES, ManifestError, VideoRecord, load_manifest,
                               parse_manifest, write_manifest)

HEADER = "video_id,path,take_id,view,participant,split,labels,flow,rate,depth\n"


def write(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    p = tmp_path / "manifest.csv"
    p.write_text(header + "".join(r + "\n" for r in rows))
    return p


def test_good_values_are_read(tmp_path):
    m = write(tmp_path, ["a_v1,a1.mp4,a,1,p1,train,0,,104.5,5.4",
                         "a_v2,a2.mp4,a,2,p1,train,0,,104.5,5.4",
                         "b_v1,b1.mp4,b,1,p1,train,11,,86,",  # depth left empty
                         "c_v1,c1.mp4,c,1,p1,train,10,,,"])  # neither
    recs = {r.video_id: r for r in load_manifest(m, check_files=False)}
    assert (recs["a_v1"].rate, recs["a_v1"].depth) == (104.5, 5.4)
    assert (recs["b_v1"].rate, recs["b_v1"].depth) == (86.0, None)
    assert (recs["c_v1"].rate, recs["c_v1"].depth) == (None, None)


def test_old_manifests_without_the_columns_still_load(tmp_path):
    m = write(tmp_path, ["a_v1,a1.mp4,a,1,p1,train,0,"],
              header="video_id,path,take_id,view,participant,split,labels,flow\n")
    (r,) = load_manifest(m, check_files=False)
    assert r.rate is None and r.depth is None


@pytest.mark.parametrize("field, value, says", [
    ("rate", "fast", "rate 'fast' is not a number (compressions per minute)"),
    ("rate", "nan", "rate 'nan' must be a finite number above 0"),
    ("rate", "inf", "rate 'inf' must be a finite number above 0"),
    ("rate", "-100", "rate '-100' must be a finite number above 0"),
    ("rate", "0", "rate '0' must be a finite number above 0"),
    ("rate", "1100", "rate '1100' is outside the plausible range 10-300 compressions per minute"),
    ("rate", "5", "rate '5' is outside the plausible range 10-300"),
    ("depth", "55", "depth '55' is outside the plausible range 0.1-15 cm (a depth in mm? give cm)"),
    ("depth", "5,5", "fields but the header has"),  # an unquoted decimal comma splits the row
    ("depth", "0.0", "depth '0.0' must be a finite number above 0 (cm)"),
])
def test_bad_values_are_named_by_row_and_field(tmp_path, field, value, says):
    rate, depth = ("104", "5.5")
    rate, depth = (value, depth) if field == "rate" else (rate, value)
    m = write(tmp_path, ["a_v1,a1.mp4,a,1,p1,train,0,,100,5", f"b_v1,b1.mp4,b,1,p1,train,0,,{rate},{depth}"])
    recs, errors = parse_manifest(m, check_files=False)
    assert [r.video_id for r in recs] == ["a_v1"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith(f"{m}:row 3")
    assert says in errors[0], errors[0]
    with pytest.raises(ManifestError, match="row 3"):
        load_manifest(m, check_files=False)


def test_views_of_a_take_must_agree(tmp_path):
    m = write(tmp_path, ["a_v1,a1.mp4,a,1,p1,train,0,,104,5.5",
                         "a_v2,a2.mp4,a,2,p1,train,0,,98,5.5"])
    _, errors = parse_manifest(m, check_files=False)
    assert errors == [f"{m}:row 3 (a_v2): take 'a' has rate 98.0 but row 2 (a_v1) says 104.0"]


def test_writer_keeps_the_values(tmp_path):
    assert COLUMNS[-2:] == tuple(MEASURES) == ("rate", "depth")
    (tmp_path / "videos").mkdir()
    recs = [VideoRecord("a_v1", tmp_path / "videos/a1.mp4", "a", 1, "p1", "train", (0,),
                        rate=104.27712, depth=5.356),
            VideoRecord("b_v1", tmp_path / "videos/b1.mp4", "b", 1, "p1", "val", (11,), rate=63.8)]
    m = tmp_path / "manifest.csv"
    write_manifest(m, recs)
    lines = m.read_text().splitlines()
    assert lines[0].endswith(",rate,depth")
    assert lines[1].endswith(",104.277,5.356") and lines[2].endswith(",63.8,")
    back = load_manifest(m, check_files=False)
    assert [(r.rate, r.depth) for r in back] == [(104.277, 5.356), (63.8, None)]


def test_manifest_check_summarises_the_values(tmp_path, capsys):
    from pipeline.cli import main

    m = write(tmp_path, ["a_v1,a1.mp4,a,1,p1,train,0,,104.5,5.4",
                         "b_v1,b1.mp4,b,1,p1,train,11,,86,"])
    assert main(["manifest", "check", str(m), "--no-files"]) == 0
    out = capsys.readouterr().out
    assert "rate: 2 rows, 86-104.5 compressions per minute" in out
    assert "depth: 1 rows, 5.4-5.4 cm" in out
