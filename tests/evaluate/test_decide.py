"""The decision rules shared by `cprclip eval` and the assistant, on hand-made scores."""
import numpy as np

from evaluate.decide import decide, zscore_predictions
from pipeline.taxonomy import NUM_CLASSES


def test_decide_keeps_one_error_per_exclusive_group_and_at_most_four():
    thr = np.full(NUM_CLASSES, 0.5)
    s = np.zeros(NUM_CLASSES)
    s[[10, 12]] = [0.7, 0.9]        # depth: both above -> keep 12 (larger margin)
    s[[4, 5, 6, 11]] = [0.8, 0.85, 0.6, 0.55]
    errors, correct, dropped = decide(s, thr)
    assert errors == [12, 5, 4, 6]  # best first, four at most
    reasons = {d["id"]: d["reason"] for d in dropped}
    assert "Excessive Pressing" in reasons[10] and "depth" in reasons[10]
    assert "at most 4" in reasons[11]
    assert not correct


def test_decide_correct_and_zscore_rule():
    s = np.full(NUM_CLASSES, 0.1)
    s[0] = 0.9
    errors, correct, _ = decide(s, None, clip_z=1.0)  # z-rule: top class always detected
    assert errors == [] and correct


def test_zscore_rule_against_a_hand_computed_row():
    s = np.array([[0.0, 1.0, 2.0, 3.0, 10.0] + [0.0] * (NUM_CLASSES - 5)])
    z = (s - s.mean()) / s.std()
    want = (z >= 1.0).astype(np.uint8)
    want[0, 4] = 1  # the top class is always predicted
    np.testing.assert_array_equal(zscore_predictions(s, 1.0), want)
    # a flat row: only the (first) top class
    flat = zscore_predictions(np.full((1, NUM_CLASSES), 0.3), 1.0)
    assert flat.sum() == 1 and flat[0, 0] == 1
