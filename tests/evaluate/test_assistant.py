"""The assistant's decision rule, threshold fallbacks and text, on hand-made scores."""
import json

import numpy as np

from evaluate import assistant as A
from pipeline.taxonomy import ADVICE, NUM_CLASSES


def test_decide_keeps_one_error_per_exclusive_group_and_at_most_four():
    thr = np.full(NUM_CLASSES, 0.5)
    s = np.zeros(NUM_CLASSES)
    s[[10, 12]] = [0.7, 0.9]        # depth: both above -> keep 12 (larger margin)
    s[[4, 5, 6, 11]] = [0.8, 0.85, 0.6, 0.55]
    errors, correct, dropped = A.decide(s, thr)
    assert errors == [12, 5, 4, 6]  # best first, four at most
    reasons = {d["id"]: d["reason"] for d in dropped}
    assert "Excessive Pressing" in reasons[10] and "depth" in reasons[10]
    assert "at most 4" in reasons[11]
    assert not correct


def test_decide_correct_and_zscore_rule():
    s = np.full(NUM_CLASSES, 0.1)
    s[0] = 0.9
    errors, correct, _ = A.decide(s, None, clip_z=1.0)  # z-rule: top class always detected
    assert errors == [] and correct


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
