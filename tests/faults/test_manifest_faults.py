"""Issue 7 part 1 (manifest and flow) and part 5 (paths, no shell), issue 16 items 1, 3, 12 and
the manifest tracebacks: bad manifests end in one line naming the file, row and field; odd but
valid ones are handled.

The malformed manifests are GENERATED per defect class (:data:`BAD`), so a new class is one more
entry, and every entry goes through the real CLI (in-process ``pipeline.cli.main``, and a
subprocess for the file-level cases) with the same assertions: exit code != 0, exactly one error
line naming the file and row or field, no traceback.
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fault_media import HEADER, TINY_EXTRACT, good, no_traceback, row, write_config, write_manifest
from pipeline.cli import main
from pipeline.features import read_features


class _Err:
    """Everything written to stderr so far (the CLI's log handler writes there)."""

    def __init__(self, capsys):
        self.capsys, self.text = capsys, ""

    def getvalue(self) -> str:
        self.text += self.capsys.readouterr().err
        return self.text


@pytest.fixture
def log_text(capsys):
    return _Err(capsys)


def _rows_text(rows: list[list]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(HEADER)
    w.writerows(rows)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Generated cases: one entry per defect class. ``text`` builds the manifest's bytes from the
# header line and two good rows (lines 2 and 3, take t1 views 1 and 2); ``expect`` is formatted
# with m = the manifest path and must appear in the one error line.

GOOD_ROWS = [["a", "videos/a.mp4", "t1", 1, "p1", "train", "4", ""],
             ["b", "videos/b.mp4", "t1", 2, "p1", "train", "4", ""]]


def _csv(rows: list[list], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


def _plus(*extra: list) -> Callable[[], bytes]:
    """The good rows plus ``extra`` rows (line 4 on), written by a correct CSV writer."""
    return lambda: _csv(GOOD_ROWS + list(extra)).encode()


def _raw(*lines: str) -> Callable[[], bytes]:
    """Hand-written lines after the header and the good rows (line 4 on): for what a CSV writer
    would never produce (stray quotes)."""
    return lambda: (_csv(GOOD_ROWS) + "".join(ln + "\n" for ln in lines)).encode()


def _c(vid: str, path: str = "videos/c.mp4", take: str = "t2", view: int = 1,
       labels: str = "4", split: str = "train", flow: str = "") -> list:
    return [vid, path, take, view, "p1", split, labels, flow]


@dataclass(frozen=True)
class Bad:
    text: Callable[[], bytes] | None  # None: the manifest path is a folder
    expect: str


BAD: dict[str, Bad] = {
    # issue 16 item 1: a video_id becomes a file name (flow videos): one safe component only
    "traversal_id": Bad(_plus(_c("../../escape")),
                        "{m}:row 4: video_id '../../escape' is not a safe file name: it contains "
                        "a path separator"),
    "absolute_id": Bad(_plus(_c("/tmp/abs")), "{m}:row 4: video_id '/tmp/abs' is not a safe"),
    "backslash_id": Bad(_plus(_c("a\\b")), "{m}:row 4: video_id 'a\\\\b' is not a safe"),
    "dot_id": Bad(_plus(_c("..")), "{m}:row 4: video_id '..' is not a safe file name: it starts "
                                   "with '.'"),
    "hidden_id": Bad(_plus(_c(".c")), "{m}:row 4: video_id '.c' is not a safe file name"),
    "overlong_id": Bad(_plus(_c("v" * 129)), "is not a safe file name: it is 129 characters long "
                                             "(at most 128)"),
    "control_char_id": Bad(_plus(_c("c\x1b[2J")), "{m}:row 4: video_id 'c\\x1b[2J' is not a safe "
                                                 "file name: it contains the control character"),
    "empty_id": Bad(_plus(_c("")), "{m}:row 4: empty video_id"),
    # tracebacks of issue 16: NUL bytes and over-long fields
    "nul_in_field": Bad(_plus(_c("c", path="videos/c\0.mp4")),
                        "{m}:row 4: field 'path' contains a NUL byte"),
    "nul_in_header": Bad(lambda: ("video_id,pa\0th,take_id,view,participant,split,labels\n"
                                  "a,videos/a.mp4,t1,1,p1,train,4\n").encode(),
                         "{m}:row 1: the header contains a NUL byte"),
    "overlong_field": Bad(_plus(_c("c", path="videos/" + "x" * 5000 + ".mp4")),
                          "{m}:row 4: field 'path' is 5011 characters long (at most 4096)"),
    "huge_field": Bad(_plus(_c("c", path="x" * 200_000)),
                      "{m}:row 4: not a readable CSV row (field larger than field limit"),
    # issue 16 item 3: one stray quote must not swallow the rows after it
    "stray_quote_to_eof": Bad(_raw('c,"videos/c.mp4,t2,1,p1,train,4,', "d,videos/d.mp4,t3,1,p1,"
                                   "train,5,", "e,videos/e.mp4,t4,1,p1,train,6,"),
                              "{m}:row 4: field 'path' runs over lines 4-6: a stray '\"' opened a "
                              "quoted field here"),
    "stray_quote_closed_later": Bad(_raw('c,videos/c.mp4,t2,1,p1,"train,4,',
                                         'd,videos/d.mp4,t3,1,p1,train",5,'),
                                    "{m}:row 4: field 'split' runs over lines 4-5"),
    "embedded_newline": Bad(_plus(_c("c", path="videos/c\n.mp4")),
                            "{m}:row 4: field 'path' runs over lines 4-5"),
    "embedded_cr": Bad(_raw('c,videos/c.mp4,"t\r2",1,p1,train,4,'),
                       "{m}:row 4: field 'take_id' runs over lines 4-5"),
    "quote_in_header": Bad(lambda: ('video_id,"path,take_id\nview,participant,split,labels\n'
                                    ).encode(), "{m}:row 1: the header runs over lines 1-2"),
    "extra_field": Bad(_raw("c,videos/c.mp4,t2,1,p1,train,4,,my,clip.mp4"),
                       "{m}:row 4: 10 fields but the header has 8 (an unquoted ','"),
    "too_few_fields": Bad(_raw("c,videos/c.mp4,t2"), "{m}:row 4: 3 fields but the header has 8"),
    # issue 16 item 12: views of one take may not repeat
    "repeated_view": Bad(_plus(_c("c", take="t1", view=1)),
                         "{m}:row 4 (c): take 't1' repeats view 1, already given by row 2 (a)"),
    # file-level: one line naming the file
    "directory": Bad(None, "{m}: is a folder; give the manifest CSV file"),
    "latin1": Bad(lambda: _csv(GOOD_ROWS + [_c("café", "videos/café.mp4")]).encode("latin-1"),
                  "{m}: not UTF-8 (byte "),
    "utf16_bom": Bad(lambda: _csv(GOOD_ROWS).encode("utf-16"),
                     "{m}: not UTF-8 (byte 0: b'\\xff'); save it as UTF-8"),
    "empty": Bad(lambda: b"", "{m}: empty file; expected a header line video_id,path,"),
    "blank_lines_only": Bad(lambda: b"\n \r\n\n", "{m}: empty file"),
    "header_only": Bad(lambda: _csv([]).encode(), "{m}: no rows"),
    "missing_column": Bad(lambda: b"video_id,path,take_id,view\na,videos/a.mp4,t1,1\n",
                          "{m}: missing column(s) participant, split, labels"),
    "duplicate_column": Bad(lambda: _csv(GOOD_ROWS, HEADER[:-1] + ["path"]).encode(),
                            "{m}:row 1: column 'path' appears twice in the header"),
    # row-level values
    "unknown_class": Bad(_plus(_c("c", labels="14")),
                         "{m}:row 4 (c): labels '14': unknown class 14"),
    "labels_not_ints": Bad(_plus(_c("c", labels="4,5")), "{m}:row 4 (c): labels '4,5'"),
    "impossible_set": Bad(_plus(_c("c", labels="7;8")), "cannot occur together (posture)"),
    "duplicate_id": Bad(_plus(_c("a")), "{m}:row 4 (a): duplicate video_id, first seen on row 2"),
    "view_zero": Bad(_plus(_c("c", view=0)), "{m}:row 4 (c): view '0' is not one of 1..4"),
    "view_text": Bad(_plus(_c("c", view="front")), "{m}:row 4 (c): view 'front'"),
    "bad_split": Bad(_plus(_c("c", split="holdout")), "{m}:row 4 (c): split 'holdout'"),
    "take_disagrees": Bad(_plus(_c("c", take="t1", view=3, labels="5")),
                          "{m}:row 4 (c): take 't1' has labels '5' but row 2 (a) says '4'"),
    "missing_video": Bad(_plus(_c("c", path="videos/gone.mp4")), "{m}:row 4 (c): video file"),
    "path_leaves_folder": Bad(_plus(_c("c", path="../c.mp4")),
                              "{m}:row 4 (c): path '../c.mp4' leaves the dataset folder"),
    "flow_leaves_folder": Bad(_plus(_c("c", flow="/etc")),
                              "{m}:row 4 (c): flow path '/etc' leaves the dataset folder"),
    "empty_path": Bad(_plus(_c("c", path="")), "{m}:row 4 (c): empty path"),
    "overlong_path_component": Bad(_plus(_c("c", path="videos/" + "y" * 300 + ".mp4")),
                                   "{m}:row 4 (c): video file"),
}


def _make(tmp_path: Path, case: Bad) -> Path:
    for name in ("a", "b", "c"):
        (tmp_path / "videos").mkdir(exist_ok=True)
        (tmp_path / "videos" / f"{name}.mp4").write_bytes(b"x")  # manifest check: is_file only
    m = tmp_path / "manifest.csv"
    if case.text is None:
        m.mkdir()
    else:
        m.write_bytes(case.text())
    return m


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if " ERROR " in ln]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_manifest_is_one_line_naming_file_and_row(tmp_path, capsys, name):
    case = BAD[name]
    m = _make(tmp_path, case)
    capsys.readouterr()
    rc = main(["manifest", "check", str(m)])
    out, err = capsys.readouterr()
    no_traceback(err)
    assert rc != 0, (out, err)
    line = _one_error_line(err)
    assert case.expect.format(m=m) in line, line
    if "good rows" in out:  # the summary counts the bad row (a stray quote once hid it: 0 bad)
        assert ", 1 bad," in out, out


@pytest.mark.parametrize("name", ["directory", "nul_in_field", "stray_quote_to_eof",
                                  "huge_field", "empty", "traversal_id"])
def test_bad_manifest_in_a_fresh_process(tmp_path, name):
    """The same through ``python -m pipeline`` as a user runs it: the exit code and stderr of a
    real process (no traceback reaches the terminal from any layer)."""
    m = _make(tmp_path, BAD[name])
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "pipeline", "manifest", "check", str(m)],
                       cwd=root, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(root)))
    no_traceback(r.stderr)
    assert r.returncode == 1, r.stderr
    assert BAD[name].expect.format(m=m) in _one_error_line(r.stderr)


@pytest.mark.parametrize("name", ["traversal_id", "stray_quote_to_eof", "nul_in_field",
                                  "repeated_view", "directory"])
def test_stages_refuse_the_same_manifests(tmp_path, capsys, name):
    """flow and extract stop on the manifest with the same line, before writing anything."""
    m = _make(tmp_path, BAD[name])
    cfg = write_config(tmp_path, m)
    capsys.readouterr()
    assert main(["flow", "--config", str(cfg), "method=farneback", "workers=1"]) == 2
    assert main(["extract", "--config", str(cfg), *TINY_EXTRACT, "modalities=rgb"]) == 2
    err = capsys.readouterr().err
    no_traceback(err)
    assert err.count(BAD[name].expect.format(m=m)) == 2, err
    assert not (tmp_path / "flow").exists() and not (tmp_path / "features").exists()


OK_CASES: dict[str, Callable[[], bytes]] = {
    "bom_crlf": lambda: b"\xef\xbb\xbf" + _csv(GOOD_ROWS).replace("\n", "\r\n").encode(),
    "cr_only_line_ends": lambda: _csv(GOOD_ROWS).replace("\n", "\r").encode(),
    "no_trailing_newline": lambda: _csv(GOOD_ROWS).rstrip("\n").encode(),
    "blank_lines_between_rows": lambda: _csv(GOOD_ROWS).replace("\n", "\n\n").encode(),
    "flow_column_left_off": lambda: _csv([r[:-1] for r in GOOD_ROWS], HEADER[:-1]).encode(),
    "trailing_empty_fields": lambda: "".join(
        ln + ",,\n" for ln in _csv(GOOD_ROWS).splitlines()).encode(),
    "quoted_fields_with_commas_and_quotes": lambda: _csv(
        [["a", "videos/a.mp4", "t1", 1, 'p1, "x"', "train", "4", ""],
         ["b", "videos/b.mp4", "t1", 2, 'p1, "x"', "train", "4", ""]]).encode(),
    "extra_unknown_column": lambda: _csv([r + ["note"] for r in GOOD_ROWS],
                                         HEADER + ["comment"]).encode(),
    "ids_with_spaces_and_unicode": lambda: _csv(
        [["clip 1 é", "videos/a.mp4", "t1", 1, "p1", "train", "4", ""],
         ["中文_2", "videos/b.mp4", "t1", 2, "p1", "train", "4", ""]]).encode(),
    "max_length_id": lambda: _csv(
        [["v" * 128, "videos/a.mp4", "t1", 1, "p1", "train", "4", ""]]).encode(),
}


@pytest.mark.parametrize("name", sorted(OK_CASES))
def test_odd_but_valid_manifests_are_read(tmp_path, capsys, name):
    m = _make(tmp_path, Bad(OK_CASES[name], ""))
    rc = main(["manifest", "check", str(m)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    n = 1 if name == "max_length_id" else 2
    assert f"{n} good rows, 0 bad, 1 takes" in out


def test_manifest_in_latin1_is_refused_with_the_byte(tmp_path, log_text):
    good(tmp_path / "videos" / "café.mp4")
    m = tmp_path / "manifest.csv"
    m.write_bytes(_rows_text([row("café", "videos/café.mp4")]).encode("latin-1"))
    assert main(["manifest", "check", str(m)]) == 1
    cfg = write_config(tmp_path, m)
    assert main(["extract", "--config", str(cfg), *TINY_EXTRACT, "modalities=rgb"]) == 2
    assert main(["flow", "--config", str(cfg), "method=farneback", "workers=1"]) == 2
    text = log_text.getvalue()
    assert f"{m}: not UTF-8 (byte " in text and "save it as UTF-8" in text
    assert text.count("not UTF-8") == 3
    no_traceback(text)


def test_manifest_in_utf16_is_refused(tmp_path, log_text):
    m = tmp_path / "manifest.csv"
    m.write_bytes(_rows_text([row("a", "videos/a.mp4")]).encode("utf-16"))
    assert main(["manifest", "check", "--no-files", str(m)]) == 1
    assert f"{m}: not UTF-8 (byte 0: b'\\xff'); save it as UTF-8" in log_text.getvalue()


def test_manifest_with_bom_and_crlf_is_read(tmp_path, capsys):
    good(tmp_path / "videos" / "a.mp4")
    m = tmp_path / "manifest.csv"
    text = _rows_text([row("a", "videos/a.mp4")]).replace("\r\n", "\n").replace("\n", "\r\n")
    m.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert main(["manifest", "check", str(m)]) == 0
    assert "1 good rows, 0 bad" in capsys.readouterr().out


def test_paths_with_spaces_non_ascii_and_shell_syntax_are_plain_names(tmp_path, monkeypatch):
    """Video names that a shell would run ($(...), backticks, ;) are only ever file names:
    flow and extract process them and nothing is executed."""
    monkeypatch.chdir(tmp_path)
    names = ["$(touch PWNED1).mp4", "`touch PWNED2`.mp4", "a;touch PWNED3;.mp4",
             "with space é ü 中文.mp4", "-rf.mp4"]
    rows = []
    for i, n in enumerate(names):
        good(tmp_path / "videos" / n, seed=i, n=12)
        rows.append(row(f"v{i}", f"videos/{n}"))
    m = write_manifest(tmp_path / "manifest.csv", rows)
    cfg = write_config(tmp_path, m)
    assert main(["flow", "--config", str(cfg), "method=farneback", "short_side=32",
                 "workers=1"]) == 0
    assert main(["extract", "--config", str(cfg), *TINY_EXTRACT]) == 0
    for mod in ("rgb", "flow"):
        fs = read_features(tmp_path / "features" / "tiny" / f"tsn_r18-{mod}-4seg.h5")
        assert sorted(fs.video_id) == [f"v{i}" for i in range(len(names))]
    assert not [p for p in tmp_path.rglob("PWNED*")] and not list(Path("/").glob("PWNED*"))


def test_manifest_paths_cannot_leave_the_dataset_folder(tmp_path, log_text):
    good(tmp_path / "outside.mp4")
    data = tmp_path / "data"
    good(data / "videos" / "ok.mp4")
    os.symlink(tmp_path / "outside.mp4", data / "videos" / "link.mp4")
    m = write_manifest(data / "manifest.csv", [
        row("ok", "videos/ok.mp4"), row("up", "../outside.mp4"),
        row("abs", str(tmp_path / "outside.mp4")), row("link", "videos/link.mp4"),
        row("fl", "videos/ok.mp4", take="fl", flow="../../etc")])
    assert main(["manifest", "check", str(m)]) == 1
    text = log_text.getvalue()
    for r, vid, rel in ((3, "up", "../outside.mp4"), (4, "abs", str(tmp_path / "outside.mp4")),
                        (5, "link", "videos/link.mp4")):
        assert f"{m}:row {r} ({vid}): path {rel!r} leaves the dataset folder {data}" in text
    assert f"{m}:row 6 (fl): flow path '../../etc' leaves the dataset folder" in text
    # The stages refuse the manifest before reading any video.
    cfg = write_config(tmp_path, m)
    assert main(["extract", "--config", str(cfg), *TINY_EXTRACT, "modalities=rgb"]) == 2
    assert not (tmp_path / "features" / "tiny" / "tsn_r18-rgb-4seg.h5").exists()
    # The option allows it where a user means it (the flow row points at a folder, which
    # only fails when the flow is read).
    assert main(["manifest", "check", "--allow-outside-root", str(m)]) == 0
    assert main(["extract", "--config", str(cfg), *TINY_EXTRACT, "modalities=rgb",
                 "allow_outside_root=true"]) == 0
    fs = read_features(tmp_path / "features" / "tiny" / "tsn_r18-rgb-4seg.h5")
    assert sorted(fs.video_id) == ["abs", "fl", "link", "ok", "up"]


def test_missing_flow_folder_is_a_failure_row_and_the_run_goes_on(tmp_path, log_text):
    good(tmp_path / "videos" / "a.mp4", seed=1)
    good(tmp_path / "videos" / "b.mp4", seed=2)
    m = write_manifest(tmp_path / "manifest.csv", [
        row("a", "videos/a.mp4", flow="flow/a_frames"),  # a folder of x_/y_ JPEGs that is gone
        row("b", "videos/b.mp4", flow="")])  # no flow at all
    cfg = write_config(tmp_path, m)
    assert main(["extract", "--config", str(cfg), *TINY_EXTRACT]) == 1
    text = log_text.getvalue()
    assert f"flow: a: flow {tmp_path / 'flow' / 'a_frames'} not found (run 'cprclip flow')" in text
    assert f"flow: b: {tmp_path / 'videos' / 'b.mp4'}: no flow for this video" in text
    fs = read_features(tmp_path / "features" / "tiny" / "tsn_r18-rgb-4seg.h5")
    assert sorted(fs.video_id) == ["a", "b"]  # rgb is unaffected
    assert not (tmp_path / "features" / "tiny" / "tsn_r18-flow-4seg.h5").exists()
    no_traceback(text)
