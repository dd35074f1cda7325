"""The run convention every trainer shares (pipeline/runs.py): metrics.jsonl and the resume rule.
The trainers' own tests (tests/finetune, tests/train) check that they follow it."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pipeline.runs import (MetricsLog, ResumeError, SavedState, fingerprint, identity_diff,
                           read_metrics, read_state, resume_after)


def _rows(path: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in path.read_text().splitlines()]


def test_metrics_append_then_resume_keeps_earlier_rows_verbatim(tmp_path):
    m = MetricsLog(tmp_path / "metrics.jsonl")
    m.start(0)
    for e in (1, 2, 3):
        m.append({"epoch": e, "train/loss": 1.0 / e})
    before = (tmp_path / "metrics.jsonl").read_text().splitlines()
    m.start(2)  # resumed after epoch 2: epoch 3 runs again
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == before[:2]
    m.append({"epoch": 3, "train/loss": 0.5})
    assert _rows(tmp_path / "metrics.jsonl") == [1, 2, 3]
    m.start(0)  # starting over empties it
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_half_written_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"epoch": 1, "x": 1}\n{"epoch": 2, "x": 2}\n{"epoch": 3, "x"')
    with caplog.at_level(logging.WARNING):
        assert [r["epoch"] for r in read_metrics(p)] == [1, 2]
    assert f"{p}: line 3 is half written" in caplog.text
    MetricsLog(p).start(5)
    assert _rows(p) == [1, 2]


def test_a_bad_line_before_the_last_is_an_error_naming_the_file(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=f"{p}: line 2 is not a JSON object"):
        read_metrics(p)
    with pytest.raises(ValueError, match=str(p)):
        MetricsLog(p).start(3)


def test_a_failed_append_names_the_file():
    with pytest.raises(OSError) as e:
        MetricsLog(Path("/dev/full")).append({"epoch": 1, "x": "y" * 10000})
    assert e.value.filename == "/dev/full"


IDENTITY = {"config": {"lr": 0.1, "epochs": 3}, "inputs": {"manifest": "abc"}}


@pytest.mark.parametrize("mode", [True, "auto"])
def test_resume_continues_only_the_same_identity(mode, caplog):
    same = SavedState(2, fingerprint(IDENTITY), IDENTITY)
    with caplog.at_level(logging.INFO):
        assert resume_after(mode, same, IDENTITY, "run", 3) == 2
    assert "run: resuming after epoch 2 of 3" in caplog.text
    other = {"config": {"lr": 0.2, "epochs": 3}, "inputs": {"manifest": "abd"}}
    if mode is True:
        with pytest.raises(ResumeError, match=r"config\.lr, inputs\.manifest"):
            resume_after(mode, same, other, "run", 3)
    else:
        assert resume_after(mode, same, other, "run", 3) == 0
        assert "config.lr, inputs.manifest" in caplog.text


def test_resume_false_or_no_state_starts_over(caplog):
    same = SavedState(2, fingerprint(IDENTITY), IDENTITY)
    assert resume_after(False, same, IDENTITY, "run", 3) == 0
    with caplog.at_level(logging.WARNING):
        assert resume_after(True, None, IDENTITY, "run", 3) == 0
    assert "no saved state" in caplog.text
    assert resume_after("auto", None, IDENTITY, "run", 3) == 0
    # a state that kept only its fingerprint is still compared by it
    assert resume_after("auto", SavedState(1, fingerprint(IDENTITY)), IDENTITY, "run", 3) == 1


def test_an_unreadable_state_is_an_error_only_when_resume_is_true(tmp_path):
    p = tmp_path / "state"
    p.write_bytes(b"garbage")

    def load(path):
        raise ValueError(f"{path}: not a readable state")

    with pytest.raises(ValueError, match=str(p)):
        read_state(True, p, load)
    assert read_state("auto", p, load) is None
    assert read_state(False, p, load) is None
    assert read_state(True, tmp_path / "absent", load) is None
    assert read_state("auto", p, lambda path: path.read_bytes()) == b"garbage"


def test_identity_diff_names_nested_keys():
    a = {"config": {"lr": 0.1, "sizes": [2, 3]}, "features": {"rgb": "x"}}
    b = {"config": {"lr": 0.1, "sizes": (2, 3), "new": 1}, "features": {"rgb": "y"}}
    assert identity_diff(a, b) == ["config.new", "features.rgb"]
    assert identity_diff(a, a) == []
