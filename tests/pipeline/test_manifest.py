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


# --- safe names (issue 16 item 1) ------------------------------------------------------------

@pytest.mark.parametrize("name,problem", [
    ("", "is empty"), ("../x", "path separator"), ("/etc/x", "path separator"),
    ("a\\b", "path separator"), ("..", "starts with '.'"), (".hidden", "starts with '.'"),
    ("v" * 129, "129 characters long"), ("a\0b", "control character '\\x00'"),
    ("a\nb", "control character '\\n'"), ("a\x1b[31m", "control character '\\x1b'"),
])
def test_unsafe_names_are_refused(tmp_path, name, problem):
    from pipeline.paths import UnsafeNameError, name_problem, safe_child

    assert problem in name_problem(name)
    with pytest.raises(UnsafeNameError, match="refusing to write under"):
        safe_child(tmp_path, name, ".mp4")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["P11_T120_V3", "clip 1 é", "中文", "a.b-c_d", "v" * 128])
def test_safe_names_stay_inside(tmp_path, name):
    from pipeline.paths import name_problem, safe_child

    assert name_problem(name) is None
    assert safe_child(tmp_path, name, ".mp4") == tmp_path / f"{name}.mp4"


def test_safe_child_refuses_a_symlink_that_leaves_the_folder(tmp_path):
    from pipeline.paths import UnsafeNameError, safe_child

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "v1.mp4").symlink_to(tmp_path / "elsewhere.mp4")
    with pytest.raises(UnsafeNameError, match="resolves outside"):
        safe_child(tmp_path / "out", "v1", ".mp4")


def test_unsafe_video_id_is_a_bad_row(tmp_path):
    p = make(tmp_path, GOOD + ["../../x,a.mp4,t9,1,p1,train,4,"])
    records, errors = parse_manifest(p)
    assert errors == [f"{p}:row 5: video_id '../../x' is not a safe file name: it contains a "
                      "path separator ('/' or '\\'); it must be one file name"]
    assert len(records) == 3


# --- quoting and takes (issue 16 items 3 and 12) ---------------------------------------------

def test_a_stray_quote_is_named_on_its_row_and_later_rows_survive(tmp_path):
    rows = GOOD[:1] + ['v2,"b.mp4,t1,2,p1,train,4,', 'v4,b.mp4,t4,1,p1,train,5,',
                       'v5,c.mp4,t5,1,p1,train,6,"', 'v6,c.mp4,t6,1,p1,train,7,']
    p = make(tmp_path, rows)
    records, errors = parse_manifest(p)
    assert len(errors) == 1 and errors[0].startswith(f"{p}:row 3: field 'path' runs over lines "
                                                     "3-5: a stray '\"'")
    assert [r.video_id for r in records] == ["v1", "v6"]  # the row after the closing quote
    assert [r.row for r in records] == [2, 6]  # rows keep their line numbers


def test_a_take_may_not_repeat_a_view(tmp_path):
    p = make(tmp_path, GOOD + ["v4,c.mp4,t1,2,p1,train,4,"])
    records, errors = parse_manifest(p)
    assert errors == [f"{p}:row 5 (v4): take 't1' repeats view 2, already given by row 3 (v2)"]
    assert [r.video_id for r in records] == ["v1", "v2", "v3"]


@pytest.mark.parametrize("content,fragment", [
    (b"", "empty file"), (b"\n\n", "empty file"),
    (HEADER.encode(), "no rows"),
    ((HEADER + "v1,a\0.mp4,t1,1,p1,train,4,\n").encode(), "row 2: field 'path' contains a NUL"),
    ((HEADER + "v1," + "a" * 5000 + ",t1,1,p1,train,4,\n").encode(), "row 2: field 'path' is 5000"),
])
def test_file_level_problems_are_one_line(tmp_path, content, fragment):
    p = tmp_path / "m.csv"
    p.write_bytes(content)
    with pytest.raises(ManifestError) as e:
        load_manifest(p, check_files=False)
    assert fragment in str(e.value) and str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_a_folder_as_the_manifest(tmp_path):
    with pytest.raises(ManifestError, match="is a folder; give the manifest CSV file"):
        load_manifest(tmp_path)


# --- the flow index (issue 13 part 6) --------------------------------------------------------

def test_resolve_flow_takes_the_manifest_first_then_a_current_index_entry(tmp_path):
    import os

    from pipeline.manifest import flow_entry, write_flow_index

    p = make(tmp_path, ["v1,a.mp4,t1,1,p1,train,4,", "v2,b.mp4,t1,2,p1,train,4,own.mp4",
                        "v3,c.mp4,t2,1,p2,test,3;10,"])
    flow_dir = tmp_path / "flow"
    flow_dir.mkdir()
    entries = []
    for vid, video in (("v1", "a.mp4"), ("v2", "b.mp4"), ("v3", "c.mp4")):
        (flow_dir / f"{vid}.mp4").write_bytes(b"flow")
        entries.append(flow_entry(vid, flow_dir / f"{vid}.mp4", "r", tmp_path / video))
    write_flow_index(flow_dir, entries)
    os.utime(tmp_path / "c.mp4", ns=(1, 1))  # v3's video changed after its flow was made
    before = p.read_bytes()
    got = {r.video_id: r.flow for r in load_manifest(p)}
    assert got == {"v1": (flow_dir / "v1.mp4").resolve(), "v2": (tmp_path / "own.mp4").resolve(),
                   "v3": None}
    assert p.read_bytes() == before
    # An index in another folder is found when the reader is given that folder, not otherwise.
    moved = tmp_path / "elsewhere"
    (flow_dir).rename(moved)
    assert load_manifest(p)[0].flow is None
    assert load_manifest(p, flow_dir=moved)[0].flow == (moved / "v1.mp4").resolve()


def test_flow_index_round_trip_is_relative_to_its_folder(tmp_path):
    from pipeline.manifest import flow_entry, read_flow_index, write_flow_index

    (tmp_path / "data" / "flow").mkdir(parents=True)
    (tmp_path / "data" / "v.mp4").write_bytes(b"video")
    e = flow_entry("v", tmp_path / "data" / "flow" / "v.mp4", "cprclip-flow method=dis",
                   tmp_path / "data" / "v.mp4")
    write_flow_index(tmp_path / "data" / "flow", [e])
    assert "v,v.mp4,cprclip-flow method=dis,../v.mp4,5," in \
        (tmp_path / "data" / "flow" / "index.csv").read_text()
    (tmp_path / "data").rename(tmp_path / "moved")  # the dataset moves with its flow
    back = read_flow_index(tmp_path / "moved" / "flow")["v"]
    assert back.source == (tmp_path / "moved" / "v.mp4").resolve()
    assert back.is_current(tmp_path / "moved" / "v.mp4")
