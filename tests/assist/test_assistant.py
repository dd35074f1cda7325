"""The assistant: thresholds, text, its JSON, and one `Assistant` on a tiny real run."""
import json
import shutil
import subprocess

import numpy as np
import pytest

from assist import assistant as A
from pipeline.taxonomy import ADVICE, CLASSES, NUM_CLASSES

# the keys of `cprclip predict --json`, in order (the web API adds its own after them)
PREDICT_JSON_KEYS = ["videos", "views", "run", "model", "head", "threshold_source", "errors",
                     "looks_correct", "correct_detected", "scores", "thresholds", "suppressed",
                     "warnings", "verdict", "reason", "probabilities", "marks", "candidates",
                     "input_check", "measures", "keypoints"]
# measures: rate and depth (issue 19), [] without runs; keypoints: where each view's body
# keypoints came from (runs with a skeleton stream), [] otherwise


def test_threshold_fallbacks(tmp_path):
    cfg = A.PredictConfig()
    op, src, ood, warns = A.load_operating_point(tmp_path, "bce", cfg, None)
    assert np.allclose(op.marks, 0.5) and not op.calibrated and src.startswith("fixed")
    assert ood is None and "not found" in warns[0] and "unsuitable video" in warns[0]
    op, src, ood, warns = A.load_operating_point(tmp_path, "clip", cfg, None)
    assert op.marks is None and "z-score" in src
    # a file from before calibration: its raw thresholds, said to be uncalibrated
    vals = [0.1 * k for k in range(NUM_CLASSES)]
    vals[3] = None
    (tmp_path / "thresholds.json").write_text(json.dumps({"heads": {"clip": {"values": vals}}}))
    op, src, ood, warns = A.load_operating_point(tmp_path, "clip", cfg, "f" * 64)
    assert op.marks[2] == 0.2 and np.isinf(op.marks[3]) and src.startswith("val")
    assert any("uncalibrated" in w for w in warns)
    op, src, ood, warns = A.load_operating_point(tmp_path, "bce", cfg, None)  # head missing
    assert np.allclose(op.marks, 0.5) and any("no 'bce' operating point" in w for w in warns)


def test_thresholds_of_another_checkpoint_are_refused(tmp_path):
    from evaluate.decide import OperatingPoint

    op = OperatingPoint("bce", "val_f1", np.full(NUM_CLASSES, 0.4))
    (tmp_path / "thresholds.json").write_text(json.dumps(
        {"version": 2, "checkpoint": {"sha256": "a" * 64}, "heads": {"bce": op.to_dict()}}))
    with pytest.raises(A.PredictError, match="made for checkpoint sha256 aaaaaaaaaaaa.*eval"):
        A.load_operating_point(tmp_path, "bce", A.PredictConfig(), "b" * 64)
    op2, src, _, warns = A.load_operating_point(
        tmp_path, "bce", A.PredictConfig(threshold_source="fixed"), "b" * 64)
    assert src.startswith("fixed") and any("made for checkpoint" in w for w in warns)


def test_text_follows_the_verdict():
    det = A.Detection(4, "Bending Arms", 0.8, 0.5, ADVICE[4], probability=0.72, mark=0.4)
    p = A.Prediction(["a/x.mp4"], [3], "bce", "bce", "bce", "val", [det], False, False, {}, None)
    text = A.format_text(p)
    assert p.verdict == "errors"
    assert "x.mp4 (view 3)" in text and "Bending Arms (72% likely, reported from 40%)" in text
    assert "keep the arms straight" in text
    raw = A.Detection(4, "Bending Arms", 0.8, 0.5, ADVICE[4])  # uncalibrated: said so
    p = A.Prediction(["x.mp4"], [1], "bce", "bce", "bce", "fixed", [raw], False, False, {}, None)
    assert "uncalibrated score 80%" in A.format_text(p)
    ok = A.Prediction(["x.mp4"], [1], "bce", "bce", "bce", "val", [], True, True, {}, None,
                      probabilities={c: 0.9 if c == "Correct" else 0.01 for c in CLASSES})
    assert ok.verdict == "correct" and "look correct (90% likely)" in A.format_text(ok)
    unsure = A.Prediction(["x.mp4"], [1], "bce", "bce", "bce", "val", [], False, False, {}, None,
                          verdict="not_sure", reason="Slow Frequency came close",
                          candidates=[A.Detection(11, "Slow Frequency", 0.3, 0.35, ADVICE[11],
                                                  0.31, 0.35)])
    text = A.format_text(unsure)
    assert "Not sure: Slow Frequency came close." in text and "look correct" not in text
    assert "Slow Frequency (31% likely, reported from 35%): press faster." in text
    bad = A.Prediction(["x.mp4"], [1], "bce", "bce", "bce", "val", [], False, False, {}, None,
                       verdict="unsuitable", reason="the video does not look like CPR")
    text = A.format_text(bad)
    assert text.count("Unsuitable video: the video does not look like CPR.") == 1
    assert "No errors are listed" in text and "Detected" not in text


def test_json_leaves_out_the_arrays():
    det = A.Detection(4, "Bending Arms", 0.8, 0.5, ADVICE[4], 0.7, 0.4)
    p = A.Prediction(["x.mp4"], [1], "r", "bce", "bce", "val", [det], False, False,
                     {c: 0.1 for c in CLASSES}, None, per_view_scores=np.zeros((1, NUM_CLASSES)),
                     frames={1: np.zeros((4, 8, 8, 3), np.uint8)})
    d = p.to_dict()
    assert list(d) == PREDICT_JSON_KEYS
    assert d["errors"] == [{"id": 4, "name": "Bending Arms", "score": 0.8, "threshold": 0.5,
                            "advice": ADVICE[4], "probability": 0.7, "mark": 0.4}]
    json.dumps(d)  # plain JSON, no arrays
    assert p.frames is not None and p.per_view_scores is not None  # the object keeps them


@pytest.mark.parametrize("videos, views, message", [
    ([], None, "1 to 4 views"),
    (["a", "b", "c", "d", "e"], None, "1 to 4 views"),
    (["a", "b"], [1], "--views has 1 numbers for 2 videos"),
    (["a"], [5], "each must be 1..4"),
    (["a", "b"], [2, 2], "each must be 1..4 and appear once"),
])
def test_check_take_refuses_what_is_not_one_take(videos, views, message):
    with pytest.raises(A.PredictError, match=message.replace(".", r"\.")):
        A.check_take(videos, views)
    assert A.check_take(["a", "b"], None) == [1, 2]


def test_load_names_a_missing_run(tmp_path):
    with pytest.raises(A.PredictError, match="nope not found: neither a folder nor a run name"):
        A.Assistant.load(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(A.PredictError, match="no checkpoint.safetensors"):
        A.Assistant.load(tmp_path / "half")
    with pytest.raises(A.PredictError, match="no trained run under"):
        A.Assistant.load(runs_dir=str(tmp_path))


def test_load_refuses_an_unknown_setting(tmp_path):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="colour"):
        A.Assistant.load(tmp_path, colour="red")


# --- one Assistant on the tiny real run (rgb + flow) --------------------------------------------

@pytest.fixture(scope="module")
def loaded(tiny_run):
    from assist import Assistant

    return Assistant.load(tiny_run["run"], threshold_source="fixed")


def test_loads_backbones_once_and_reports_each_stage(loaded, tiny_run, monkeypatch):
    import extract.runner

    built = []
    monkeypatch.setattr(extract.runner.FeatureModel, "__init__",
                        lambda *a, **k: built.append(a) or pytest.fail("a backbone was rebuilt"))
    take = tiny_run["take"]
    stages: list[str] = []
    first = loaded.analyse(take, [1, 2], on_stage=stages.append, keep_frames=True)
    again = loaded.analyse(take[:1], [3])
    assert built == []
    assert loaded.stages == ["check", "flow", "features", "score"]
    assert stages == loaded.stages
    assert first.run == "cpr_clip_plus" and first.views == [1, 2]
    assert first.videos == [str(p) for p in take]
    assert first.per_view_scores.shape == (2, NUM_CLASSES)
    np.testing.assert_allclose([first.scores[c] for c in CLASSES],
                               first.per_view_scores.mean(axis=0))
    assert sorted(first.frames) == [1, 2]
    assert first.frames[1].shape[0] == 4 and first.frames[1].shape[-1] == 3  # T = 4 RGB frames
    assert first.frames[1].dtype == np.uint8
    assert again.views == [3] and again.frames is None
    # the view that was analysed alone scores as it did inside the take
    np.testing.assert_allclose(again.per_view_scores[0], first.per_view_scores[0], rtol=1e-5,
                               atol=1e-6)
    assert any("RANDOMLY" in w for w in first.warnings)
    assert list(first.to_dict()) == PREDICT_JSON_KEYS


def test_unreadable_video_is_named(loaded, tiny_run, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"not a video" * 50)
    stages: list[str] = []
    with pytest.raises(A.UnreadableVideo, match="notes.mp4: not a readable video"):
        loaded.analyse([tiny_run["take"][0], bad], [1, 2], on_stage=stages.append)
    assert stages == ["check"]  # nothing was extracted


def test_flow_goes_to_the_scratch_folder_given(loaded, tiny_run, tmp_path):
    loaded.analyse(tiny_run["take"][:1], [2], scratch=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["view2.flow.mp4"]


# --- unsuitable input and calibrated words, on the tiny run after `cprclip eval` ---------------

@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    """A copy of the tiny run, evaluated (thresholds.json, ood.npz), loaded as the assistant."""
    from assist import Assistant
    from pipeline.cli import main as cli_main

    root = tmp_path_factory.mktemp("evaluated")
    shutil.copytree(tiny_run["run"], root / "runs" / "cpr_clip_plus")
    assert cli_main(["eval", "--config", str(tiny_run["config"]), f"runs_dir={root / 'runs'}",
                     f"report_dir={root / 'report'}", "imagined_takes=200"]) == 0
    return Assistant.load(root / "runs" / "cpr_clip_plus"), root


def _lavfi(path, source: str):
    """A 16-frame 64x48 clip from one of FFmpeg's built-in sources (``source`` ends where its
    size option would start: ``color=c=black:`` or ``testsrc=``)."""
    from pipeline.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"{source}s=64x48:r=25:d=0.64", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def not_cpr(tmp_path_factory):
    """A black video, FFmpeg's test pattern, and a clip of something else (noise and a moving
    square), each the size and length of the tiny run's videos."""
    from assist_conftest import load

    write_video = load().write_video

    root = tmp_path_factory.mktemp("not_cpr")
    return {"black": _lavfi(root / "black.mp4", "color=c=black:"),
            "test pattern": _lavfi(root / "pattern.mp4", "testsrc="),
            "something else": write_video(root / "other.mp4", n=16, w=64, h=48, seed=3)}


@pytest.mark.parametrize("kind", ["black", "test pattern", "something else"])
def test_video_that_is_not_cpr_gets_a_warning_and_no_error_list(evaluated, not_cpr, kind):
    assistant, _ = evaluated
    p = assistant.analyse([not_cpr[kind]])
    assert p.verdict == "unsuitable" and not p.looks_correct
    assert p.errors == [] and p.candidates == [] and p.suppressed == []
    assert p.input_check["unsuitable_views"] == [1]
    assert p.input_check["ratio"]["1"] > p.input_check["limit"]
    text = A.format_text(p)
    assert "Unsuitable video: the video does not look like the chest-compression videos" in text
    assert "Detected" not in text and "look correct" not in text


def test_a_real_take_passes_the_check_and_gets_calibrated_words(evaluated, tiny_run):
    assistant, root = evaluated
    p = assistant.analyse(tiny_run["take"], [1, 2])
    assert p.verdict != "unsuitable" and p.input_check["unsuitable_views"] == []
    assert all(r < p.input_check["limit"] for r in p.input_check["ratio"].values())
    assert p.probabilities is not None and p.marks is not None
    assert p.threshold_source.startswith("val")
    for d in p.errors:
        assert d.probability == pytest.approx(p.probabilities[d.name]) and d.probability >= d.mark
    if p.verdict == "correct":
        assert p.probabilities["Correct"] >= assistant.op.correct_level
    # a synthetic-only model says so, whatever its backbone
    assert any("computer-made (synthetic)" in w for w in p.warnings)
    # the report measured the operating point the assistant uses
    record = json.loads((root / "runs" / "cpr_clip_plus" / "thresholds.json").read_text())
    assert record["heads"][assistant.head]["rule"] == assistant.op.rule


def test_an_unsuitable_view_is_left_out_of_the_take(evaluated, tiny_run, not_cpr):
    assistant, _ = evaluated
    good = tiny_run["take"][0]
    alone = assistant.analyse([good], [1])
    mixed = assistant.analyse([good, not_cpr["black"]], [1, 2])
    assert mixed.verdict != "unsuitable" and mixed.input_check["unsuitable_views"] == [2]
    assert "camera 2 was left out" in mixed.input_check["note"]
    assert "camera 2 was left out" in A.format_text(mixed)
    # the verdict rests on view 1 alone
    np.testing.assert_allclose([mixed.scores[c] for c in CLASSES],
                               [alone.scores[c] for c in CLASSES], rtol=1e-5, atol=1e-6)
    assert mixed.verdict == alone.verdict
    both = assistant.analyse([not_cpr["black"], not_cpr["test pattern"]], [1, 2])
    assert both.verdict == "unsuitable" and both.errors == []
    assert "none of the videos" in both.reason


def test_a_per_view_run_standardises_each_upload_by_its_view(tiny_run, tmp_path):
    """A run trained with ``view_standardise``: the assistant scores each uploaded view after
    the run's per-view standardisation, exactly as eval scores the stored features."""
    from assist import Assistant
    from pipeline.cli import main as cli_main
    from pipeline.features import read_features
    from train.runs import load_run

    runs = tmp_path / "runs"
    rc = cli_main(["train", "--config", str(tiny_run["config"]), "backbone=tsn_r18", "segments=4",
                   "modalities=rgb,flow", "models=cpr_clip_plus", "epochs=1",
                   "text_encoder=test_hash", "imagine_per_epoch=16", "batch_size=16",
                   "val_every=1", "hidden_dim=16", "device=cpu", f"runs_dir={runs}",
                   f"text_cache_dir={tiny_run['root'] / 'text_cache'}", "view_standardise=flow"])
    assert rc == 0
    run = load_run(runs / "cpr_clip_plus")
    assert run.viewnorm.modalities == ("flow",)
    take = tiny_run["take"]
    got = Assistant.load(runs / "cpr_clip_plus", threshold_source="fixed").analyse(take, [1, 2])
    ids = [p.stem for p in take]
    feats = {}
    for m, path in run.feature_files.items():
        fs = read_features(path)
        feats[m] = fs.features[[fs.index()[i] for i in ids]]
    want = run.scores(run.prepare(feats, [1, 2]))[got.head]
    np.testing.assert_allclose(got.per_view_scores, want, rtol=1e-4, atol=1e-5)
    unprepared = run.scores(feats)[got.head]
    assert not np.allclose(got.per_view_scores, unprepared, atol=1e-3)
