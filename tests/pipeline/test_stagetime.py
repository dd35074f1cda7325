"""The stage-time table `make all` ends with (pipeline/stagetime.py)."""
from __future__ import annotations

import sys

from pipeline.stagetime import main, read_times, table


def test_run_records_time_and_exit_code_and_passes_it_on(tmp_path):
    f = tmp_path / "t.tsv"
    assert main(["run", str(f), "ok", "--", sys.executable, "-c", "pass"]) == 0
    assert main(["run", str(f), "bad", "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
    times = read_times(f)
    assert list(times) == ["ok", "bad"]
    assert times["bad"][1] == 3 and times["ok"][1] == 0
    assert all(s >= 0 for s, _ in times.values())
    out = table(f)
    assert "| ok |" in out and "| bad |" in out and "exit 3" in out and "**total**" in out
    assert "native bf16:" in out


def test_last_entry_wins_and_a_cut_line_is_skipped(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_text("extract\t10.0\t0\ntrain\t5.0\t0\nextract\t70.0\t0\ntrai", encoding="utf-8")
    times = read_times(f)
    assert times == {"extract": (70.0, 0), "train": (5.0, 0)}
    assert "| extract | 1 min 10 s | ok |" in table(f)
    assert "| **total** | **1 min 15 s** |" in table(f)


def test_bad_usage_and_missing_command(tmp_path):
    assert main(["run", str(tmp_path / "t.tsv"), "x"]) == 2
    assert main(["run", str(tmp_path / "t.tsv"), "x", "--", str(tmp_path / "no-such-binary")]) == 127
    assert read_times(tmp_path / "t.tsv")["x"][1] == 127
