import pytest

from pipeline.manifest import (ManifestError, VideoRecord, load_manifest, parse_manifest,
                               write_manifest)

HEADER = "video_id,path,take_id,view,participant,split,labels,flow\n"


def make(tmp_path, rows, header=HEADER, files=("a.mp4", "b.mp4", "c.mp4"), encoding="utf-8"):
    for f in files:
        (tmp_path / f).write_bytes(b"x")
    p = tmp_path / "manifest.csv"
    p.write_bytes((header + "".join(r + "\n" for r in rows)).encode(encoding))
    return p


GOOD = ["v1,a.mp4,t1,1,p1,train,4,", "v2,b.mp4,t1,2,p1,train,4,", "v3,c.mp4,t2,1,p2,test,3;10,"]


def test_good_manifest(tmp_path):
    recs = load_manifest(make(tmp_path, GOOD))
    assert [r.video_id for r in recs] == ["v1", "v2", "v3"]
    assert recs[2].labels == (3, 10) and recs[2].view == 1 and recs[2].path.is_absolute()
    assert recs[0].is_single and not recs[2].is_single


@pytest.mark.parametrize("bad_row,fragment", [
    ("v9,missing.mp4,t9,1,p1,train,4,", "not found"),
    ("v9,a.mp4,t9,1,p1,train,14,", "unknown class 14"),
    ("v1,a.mp4,t9,1,p1,train,4,", "duplicate video_id, first seen on row 2"),
    ("v9,a.mp4,t9,1,p1,train,7;8,", "cannot occur together (posture)"),
    ("v9,a.mp4,t1,3,p1,train,5,", "take 't1' has labels '5'"),
    ("v9,a.mp4,t9,7,p1,train,4,", "view '7'"),
    ("v9,a.mp4,t9,1,p1,holdout,4,", "split 'holdout'"),
    ("v9,../../etc/passwd,t9,1,p1,train,4,", "leaves the dataset folder"),
])
def test_each_bad_row_kind_names_file_row_and_problem(tmp_path, bad_row, fragment):
    p = make(tmp_path, GOOD + [bad_row])
    records, errors = parse_manifest(p)
    assert len(errors) == 1, errors
    assert f"{p}:row 5" in errors[0] and fragment in errors[0]
    assert len(records) == 3  # the good rows survive
    with pytest.raises(ManifestError, match="row 5"):
        load_manifest(p)


def test_missing_column_and_encoding(tmp_path):
    with pytest.raises(ManifestError, match="missing column"):
        load_manifest(make(tmp_path, ["v1,a.mp4"], header="video_id,path\n"))
    p = tmp_path / "latin.csv"
    p.write_bytes((HEADER + "v1,\xe9.mp4,t1,1,p1,train,4,\n").encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(p)


def test_bom_and_non_ascii_paths(tmp_path):
    p = make(tmp_path, ["v1,my clip é.mp4,t1,1,p1,train,4,"], files=("my clip é.mp4",),
             encoding="utf-8-sig")
    assert load_manifest(p)[0].path.name == "my clip é.mp4"


def test_write_then_load_round_trip(tmp_path):
    (tmp_path / "vids").mkdir()
    (tmp_path / "vids" / "a.mp4").write_bytes(b"x")
    rec = VideoRecord("v1", tmp_path / "vids" / "a.mp4", "t1", 2, "p3", "val", (5,),
                      tmp_path / "flow" / "a.mp4")
    write_manifest(tmp_path / "m.csv", [rec])
    assert "vids/a.mp4" in (tmp_path / "m.csv").read_text()
    back = load_manifest(tmp_path / "m.csv")[0]
    assert (back.video_id, back.path, back.view, back.labels, back.flow) == (
        "v1", rec.path.resolve(), 2, (5,), rec.flow.resolve())


def test_cli_check(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["manifest", "check", str(make(tmp_path, GOOD))]) == 0
    assert "3 good rows, 0 bad, 2 takes" in capsys.readouterr().out
    assert main(["manifest", "check", str(make(tmp_path, GOOD + ["v1,a.mp4,t1,1,p1,train,4,"]))]) == 1
