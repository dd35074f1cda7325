"""`cprclip predict` follows the stages' convention (`key=value` of [predict] after the videos,
`--config FILE`); the old flags still work with a warning; a missing run lists the runs there.

The model is replaced by a stub that records the config it was loaded with, so these tests
check the command line alone (the real chain is tests/evaluate/test_integration.py).
"""
import json

import pytest

from assist import assistant as A
from pipeline.cli import main


class _Loaded:
    def __init__(self, config):
        self.config = config

    def analyse(self, videos, views=None):
        return A.Prediction([str(v) for v in videos], list(views or range(1, len(videos) + 1)),
                            "r", "bce", self.config.head, self.config.threshold_source, [],
                            False, False, {}, None, verdict="not_sure", reason="a stub")


@pytest.fixture
def loads(monkeypatch, tmp_path):
    """The configs `Assistant.load` was called with. Runs in an empty folder, so the built-in
    defaults apply (no configs/synthetic.toml there)."""
    monkeypatch.chdir(tmp_path)
    seen = []

    def load(cls, run="", config=None, **settings):
        seen.append(config)
        return _Loaded(config)

    monkeypatch.setattr(A.Assistant, "load", classmethod(load))
    return seen


@pytest.mark.parametrize("argv", [
    ["a.mp4", "b.mp4", "run=runs/bce", "head=bce", "threshold_source=fixed", "--json"],
    ["a.mp4", "b.mp4", "--json", "run=runs/bce", "head=bce", "threshold_source=fixed"],
    ["--json", "a.mp4", "run=runs/bce", "b.mp4", "head=bce", "threshold_source=fixed"],
    ["a.mp4", "b.mp4", "--views", "3", "4", "run=runs/bce", "head=bce",
     "threshold_source=fixed", "--json"],
])
def test_key_value_after_the_videos(loads, capsys, argv):
    assert main(["predict", *argv]) == 0
    cap = capsys.readouterr()
    cfg = loads[-1]
    assert (cfg.run, cfg.head, cfg.threshold_source) == ("runs/bce", "bce", "fixed")
    out = json.loads(cap.out)
    assert out["videos"] == ["a.mp4", "b.mp4"]  # the overrides are not taken for videos
    assert out["views"] == ([3, 4] if "--views" in argv else [1, 2])
    assert "deprecated" not in cap.err


def test_a_video_named_like_an_override_stays_a_video(loads, capsys, tmp_path):
    (tmp_path / "take=1.mp4").write_bytes(b"")
    assert main(["predict", "take=1.mp4", "head=clip", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == ["take=1.mp4"]
    assert loads[-1].head == "clip"


def test_config_file_and_overrides(loads, capsys, tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text('[predict]\nhead = "clip"\ndevice = "cpu"\nclip_z = 2.0\n')
    assert main(["predict", "a.mp4", "--config", str(cfg), "clip_z=1.5"]) == 0
    assert (loads[-1].head, loads[-1].clip_z) == ("clip", 1.5)  # the override wins over the file


def test_an_unknown_key_lists_the_valid_ones(loads, capsys):
    assert main(["predict", "a.mp4", "colour=red"]) == 2
    err = capsys.readouterr().err
    assert "colour" in err and "valid keys are:" in err and "threshold_source" in err
    assert loads == []  # nothing was loaded


@pytest.mark.parametrize("flags, key, value, new", [
    (["--run", "runs/bce"], "run", "runs/bce", "run=runs/bce"),
    (["--threshold", "fixed"], "threshold_source", "fixed", "threshold_source=fixed"),
    (["--head", "clip"], "head", "clip", "head=clip"),
    (["--device", "cpu"], "device", "cpu", "device=cpu"),
    (["--set", "clip_z=2"], "clip_z", 2.0, "clip_z=2"),
])
def test_old_flags_still_work_and_name_the_new_form(loads, capsys, flags, key, value, new):
    assert main(["predict", "a.mp4", *flags]) == 0
    assert getattr(loads[-1], key) == value
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "deprecated" in line]
    assert len(warnings) == 1 and f"write {new} after the videos" in warnings[0], err


def test_key_value_wins_over_an_old_flag(loads, capsys):
    assert main(["predict", "a.mp4", "--head", "clip", "head=bce"]) == 0
    assert loads[-1].head == "bce"


def test_no_video(loads, capsys):
    assert main(["predict", "head=clip"]) == 2
    assert "no video given" in capsys.readouterr().err


# --- a missing run names the runs there are ----------------------------------------------------

@pytest.fixture
def runs(tmp_path, monkeypatch):
    """runs/ with two trained runs and one unfinished; the test runs from tmp_path."""
    monkeypatch.chdir(tmp_path)
    for name in ("bce", "cpr_clip_plus"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "checkpoint.safetensors").write_bytes(b"")
    (tmp_path / "runs" / "half").mkdir()
    return tmp_path / "runs"


@pytest.mark.parametrize("run", ["runs/nope", "nope"])
def test_missing_run_lists_the_trained_runs(runs, run):
    with pytest.raises(A.PredictError) as e:
        A.resolve_run_dir(A.PredictConfig(run=run))
    msg = str(e.value)
    assert msg.startswith(f"run {run} not found")
    assert "trained runs under runs: bce, cpr_clip_plus" in msg
    assert "runs/runs" not in msg and "half" not in msg


def test_run_as_a_path_or_a_name(runs):
    assert A.resolve_run_dir(A.PredictConfig(run="runs/bce")).resolve() == runs / "bce"
    assert A.resolve_run_dir(A.PredictConfig(run="bce")).resolve() == runs / "bce"
    assert A.resolve_run_dir(A.PredictConfig(run=str(runs / "bce"))) == runs / "bce"


def test_unfinished_run_lists_the_trained_runs(runs):
    with pytest.raises(A.PredictError, match=r"run half: no checkpoint\.safetensors in runs/half "
                                             r".*trained runs under runs: bce, cpr_clip_plus"):
        A.resolve_run_dir(A.PredictConfig(run="half"))


def test_missing_runs_dir_is_named(tmp_path):
    with pytest.raises(A.PredictError, match="runs_dir .*elsewhere does not exist"):
        A.resolve_run_dir(A.PredictConfig(run="nope", runs_dir=str(tmp_path / "elsewhere")))


def test_predict_on_a_missing_run_says_one_line(runs, capsys):
    assert main(["predict", "a.mp4", "run=runs/nope"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert "run runs/nope not found" in errors[0] and "bce, cpr_clip_plus" in errors[0]


# --- the README's Python example runs as written ------------------------------------------------

def test_readme_python_example_runs(tiny_run, tmp_path, monkeypatch, capsys):
    """The ```python block of README.md's assistant section, from a folder laid out as after
    `make all` (runs/cpr_clip_plus) with the tiny run and two of its videos."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
              if "from assist import Assistant" in b]
    assert len(blocks) == 1, "README.md should show the Python API once"
    (tmp_path / "runs").symlink_to(tiny_run["runs"], target_is_directory=True)
    for name, video in zip(("take_v1.mp4", "take_v3.mp4"), tiny_run["take"]):
        (tmp_path / name).symlink_to(video)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 - our own README
    p, answer = scope["p"], scope["answer"]
    assert p.views == [1, 3] and p.verdict in ("errors", "correct", "not_sure", "unsuitable")
    assert answer["videos"] == ["take_v1.mp4", "take_v3.mp4"] and answer["run"] == "cpr_clip_plus"
    assert capsys.readouterr().out.startswith(p.verdict)
