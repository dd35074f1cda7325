"""Issue 7 part 1 (manifest and flow) and part 5 (paths, no shell): bad manifests end in one
line naming the file, row and problem; odd but valid ones are handled."""
from __future__ import annotations

import csv
import io
import os
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
