"""The one decision rule of eval, predict and serve (evaluate.decide), on hand-made scores."""
import json

import numpy as np
import pytest

from evaluate.calibration import Calibration, fit_calibration
from evaluate.decide import (OperatingPoint, StaleThresholds, ThresholdsError, decide,
                             decide_many, fuse_checked_views, operating_point_from,
                             read_thresholds, synthetic_sources, zscore_predictions)
from pipeline.taxonomy import CORRECT, NUM_CLASSES


def identity_calibration() -> Calibration:
    """Probability = score (isotonic knots on the diagonal): marks and probabilities coincide."""
    return Calibration("isotonic", "identity", (True,) * NUM_CLASSES,
                       tuple({"x": [0.0, 1.0], "y": [0.0, 1.0]} for _ in range(NUM_CLASSES)))


def point(marks=0.5, **kw) -> OperatingPoint:
    return OperatingPoint("bce", "test", np.broadcast_to(np.asarray(marks, float), (NUM_CLASSES,)).copy(),
                          identity_calibration(), **kw)


def test_one_error_per_exclusive_group_and_at_most_four():
    s = np.zeros(NUM_CLASSES)
    s[[10, 12]] = [0.7, 0.9]        # depth: both above -> keep 12 (larger margin)
    s[[4, 5, 6, 11]] = [0.8, 0.85, 0.6, 0.55]
    d = decide(s, point())
    assert d.verdict == "errors" and d.errors == [12, 5, 4, 6]  # best first, four at most
    reasons = {x["id"]: x["reason"] for x in d.dropped}
    assert "Excessive Pressing" in reasons[10] and "depth" in reasons[10]
    assert "at most 4" in reasons[11]
    assert d.predicted_set().tolist() == [int(c in (12, 5, 4, 6)) for c in range(NUM_CLASSES)]


def test_correct_only_when_sure_and_no_error_near_its_mark():
    s = np.full(NUM_CLASSES, 0.1)
    s[CORRECT] = 0.9
    assert decide(s, point(correct_level=0.8)).verdict == "correct"
    # "Correct" below the level: not sure, and the reason gives both numbers
    d = decide(s, point(correct_level=0.95))
    assert d.verdict == "not_sure" and "90%" in d.reason and "95%" in d.reason
    assert len(d.candidates) == 3 and d.errors == []
    # an error just under its mark blocks the all-clear and is named first
    s[10] = 0.45
    d = decide(s, point(correct_level=0.8, near_margin=0.1))
    assert d.verdict == "not_sure" and d.candidates[0] == 10 and "Insufficient Pressing" in d.reason
    # ... but not when it is further away than the margin
    assert decide(s, point(correct_level=0.8, near_margin=0.04)).verdict == "correct"


def test_uncalibrated_rules_never_say_correct():
    s = np.full(NUM_CLASSES, 0.1)
    s[CORRECT] = 0.99
    raw = OperatingPoint("bce", "fixed", np.full(NUM_CLASSES, 0.5))
    d = decide(s, raw)
    assert d.verdict == "not_sure" and d.correct_detected and "not calibrated" in d.reason
    z = OperatingPoint("clip", "zscore", None, z=1.0)  # top class always detected
    d = decide(s, z)
    assert d.verdict == "not_sure" and d.correct_detected and d.errors == []


def test_unsuitable_lists_no_error_whatever_the_scores():
    s = np.full(NUM_CLASSES, 0.99)
    d = decide(s, point(), unsuitable=True, unsuitable_reason="a black screen")
    assert d.verdict == "unsuitable" and d.errors == [] and d.candidates == []
    assert d.reason == "a black screen" and d.predicted_set().sum() == 0
    pred, verdicts = decide_many(np.stack([s, s]), point(), np.array([True, False]))
    assert verdicts == ["unsuitable", "errors"] and pred[0].sum() == 0 and pred[1].sum() == 4


@pytest.mark.parametrize("seed", range(3))
def test_never_correct_below_the_level_on_random_takes(seed):
    """Whatever the scores, calibration and marks: 'correct' only with P(Correct) >= level and
    every error at least near_margin below its mark."""
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(300, NUM_CLASSES))
    labels = (train + rng.normal(size=train.shape) > 1.0).astype(int)
    cal = fit_calibration(train, labels, method=("platt", "isotonic")[seed % 2])
    n_correct = 0
    for _ in range(400):
        marks = rng.uniform(0.3, 0.99, NUM_CLASSES)
        op = OperatingPoint("clip", "random", marks, cal, correct_level=float(rng.uniform(0, 1)),
                            near_margin=float(rng.uniform(0, 0.2)))
        s = rng.normal(size=NUM_CLASSES) - 1.5  # errors mostly low ...
        s[CORRECT] = rng.normal() * 3  # ... "Correct" anywhere
        d = decide(s, op)
        p = cal(s)
        if d.verdict == "correct":
            n_correct += 1
            assert p[CORRECT] >= op.correct_level
            assert (p[1:] < marks[1:] - op.near_margin).all()
            assert d.errors == []
        if d.verdict == "errors":
            assert all(p[c] >= marks[c] for c in d.errors)
    assert n_correct > 0  # the property was exercised


def test_zscore_rule_against_a_hand_computed_row():
    s = np.array([[0.0, 1.0, 2.0, 3.0, 10.0] + [0.0] * (NUM_CLASSES - 5)])
    z = (s - s.mean()) / s.std()
    want = (z >= 1.0).astype(np.uint8)
    want[0, 4] = 1  # the top class is always predicted
    np.testing.assert_array_equal(zscore_predictions(s, 1.0), want)
    # a flat row: only the (first) top class
    flat = zscore_predictions(np.full((1, NUM_CLASSES), 0.3), 1.0)
    assert flat.sum() == 1 and flat[0, 0] == 1


def test_raw_thresholds_agree_with_the_marks():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, NUM_CLASSES))
    y = (x + rng.normal(size=x.shape) > 0.8).astype(int)
    for method in ("platt", "isotonic"):
        cal = fit_calibration(x, y, method=method)
        op = OperatingPoint("clip", "t", rng.uniform(0.1, 0.6, NUM_CLASSES), cal)
        raw = op.raw_thresholds()
        grid = np.linspace(-4, 4, 801)
        for c in range(NUM_CLASSES):
            p = cal(np.tile(grid[:, None], (1, NUM_CLASSES)))[:, c]
            above = grid[p >= op.marks[c]]
            if len(above):  # the lowest score reaching the mark is the raw threshold
                assert above.min() == pytest.approx(raw[c], abs=0.011)


def test_operating_point_round_trips_through_json():
    rng = np.random.default_rng(1)
    cal = fit_calibration(rng.normal(size=(50, NUM_CLASSES)),
                          (rng.random((50, NUM_CLASSES)) < 0.3).astype(int))
    marks = rng.random(NUM_CLASSES)
    marks[3] = np.inf
    op = OperatingPoint("bce", "imagined_f1", marks, cal, 0.6, 0.05)
    back = OperatingPoint.from_dict("bce", json.loads(json.dumps(op.to_dict())))
    assert back.rule == "imagined_f1" and back.correct_level == 0.6 and np.isinf(back.marks[3])
    s = rng.normal(size=NUM_CLASSES)
    np.testing.assert_allclose(back.probabilities(s), op.probabilities(s))
    assert decide(s, back).verdict == decide(s, op).verdict


def test_thresholds_file_is_tied_to_the_checkpoint(tmp_path):
    op = point()
    record = {"version": 2, "checkpoint": {"sha256": "a" * 64}, "heads": {"bce": op.to_dict()}}
    (tmp_path / "thresholds.json").write_text(json.dumps(record))
    assert read_thresholds(tmp_path, "a" * 64)["version"] == 2
    with pytest.raises(StaleThresholds, match="another|made for checkpoint sha256 aaaa"):
        read_thresholds(tmp_path, "b" * 64)
    with pytest.raises(ThresholdsError, match="no 'clip' operating point"):
        operating_point_from(record, "clip")
    # a file from before calibration: raw thresholds, uncalibrated
    old = {"heads": {"clip": {"values": [0.1 * k for k in range(NUM_CLASSES)]}}}
    op_old = operating_point_from(old, "clip")
    assert not op_old.calibrated and op_old.marks[2] == pytest.approx(0.2)
    (tmp_path / "thresholds.json").write_text("{broken")
    with pytest.raises(ThresholdsError, match="not readable JSON"):
        read_thresholds(tmp_path, None)


def test_fuse_checked_views_leaves_out_unsuitable_views():
    per_view = np.array([[1.0] * NUM_CLASSES, [3.0] * NUM_CLASSES, [100.0] * NUM_CLASSES])
    assert fuse_checked_views(per_view, None)[0] == pytest.approx(104 / 3)
    assert fuse_checked_views(per_view, np.array([False, False, True]))[0] == pytest.approx(2.0)
    assert fuse_checked_views(per_view, np.array([True, True, True]))[0] == pytest.approx(104 / 3)


def test_synthetic_sources_from_the_feature_recipe(tmp_path):
    from pipeline.features import FeatureRecipe

    made = tmp_path / "made"
    made.mkdir()
    (made / "synth.json").write_text("{}")
    real = tmp_path / "real"
    real.mkdir()

    def recipe(dataset, manifest, backbone="tsn_r50"):
        conf = json.dumps({"dataset": dataset, "manifest": str(manifest / "manifest.csv")})
        return FeatureRecipe(backbone, "rgb", 8, init="checkpoint", config_json=conf)

    assert synthetic_sources({"rgb": recipe("tiny", made)}) == ["tiny"]  # synth made it
    assert synthetic_sources({"rgb": recipe("synthetic", real, "tsn_mnv2")}) == ["synthetic"]
    assert synthetic_sources({"rgb": recipe("cpr_coach", real)}) == []
