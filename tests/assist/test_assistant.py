"""The assistant: thresholds, text, its JSON, and one `Assistant` on a tiny real run."""
import json

import numpy as np
import pytest

from assist import assistant as A
from pipeline.taxonomy import ADVICE, CLASSES, NUM_CLASSES

# the keys of `cprclip predict --json`, in order (the web API adds its own after them)
PREDICT_JSON_KEYS = ["videos", "views", "run", "model", "head", "threshold_source", "errors",
                     "looks_correct", "correct_detected", "scores", "thresholds", "suppressed",
                     "warnings"]


def test_threshold_fallbacks(tmp_path):
    cfg = A.PredictConfig()
    thr, src, warns = A.load_thresholds(tmp_path, "bce", cfg)
    assert np.allclose(thr, 0.5) and src.startswith("fixed") and "not found" in warns[0]
    thr, src, warns = A.load_thresholds(tmp_path, "clip", cfg)
    assert thr is None and "z-score" in src
    vals = [0.1 * k for k in range(NUM_CLASSES)]
    vals[3] = None
    (tmp_path / "thresholds.json").write_text(json.dumps({"heads": {"clip": {"values": vals}}}))
    thr, src, warns = A.load_thresholds(tmp_path, "clip", cfg)
    assert thr[2] == 0.2 and np.isinf(thr[3]) and src.startswith("val") and not warns
    thr, src, warns = A.load_thresholds(tmp_path, "bce", cfg)  # head missing in the file
    assert np.allclose(thr, 0.5) and "no usable 'bce'" in warns[0]


def test_text_names_errors_and_advice():
    det = A.Detection(4, "Bending Arms", 0.8, 0.5, ADVICE[4])
    p = A.Prediction(["a/x.mp4"], [3], "bce", "bce", "bce", "val", [det], False, False, {}, None)
    text = A.format_text(p)
    assert "x.mp4 (view 3)" in text and "Bending Arms (confidence 80%)" in text
    assert "keep the arms straight" in text
    ok = A.Prediction(["x.mp4"], [1], "bce", "bce", "bce", "val", [], True, True, {}, None)
    assert "look correct" in A.format_text(ok)


def test_json_leaves_out_the_arrays():
    det = A.Detection(4, "Bending Arms", 0.8, 0.5, ADVICE[4])
    p = A.Prediction(["x.mp4"], [1], "r", "bce", "bce", "val", [det], False, False,
                     {c: 0.1 for c in CLASSES}, None, per_view_scores=np.zeros((1, NUM_CLASSES)),
                     frames={1: np.zeros((4, 8, 8, 3), np.uint8)})
    d = p.to_dict()
    assert list(d) == PREDICT_JSON_KEYS
    assert d["errors"] == [{"id": 4, "name": "Bending Arms", "score": 0.8, "threshold": 0.5,
                            "advice": ADVICE[4]}]
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
    with pytest.raises(A.PredictError, match="no checkpoint.safetensors"):
        A.Assistant.load(tmp_path / "nope")
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
