import itertools

import numpy as np
import pytest

from pipeline import taxonomy as tx


def test_fourteen_classes_with_advice():
    assert tx.NUM_CLASSES == 14 == len(tx.ADVICE)
    assert tx.CLASSES[0] == "Correct" and tx.CLASSES[13] == "Random Position Pressing"
    assert tx.ADVICE[11] == "press faster"


def test_composite_sets_match_brute_force():
    groups = list(tx.EXCLUSIVE_GROUPS.values())
    expected = set()
    for n in (2, 3, 4):
        for combo in itertools.combinations(range(1, 14), n):
            if all(len(g.intersection(combo)) <= 1 for g in groups):
                expected.add(combo)
    got = tx.composite_label_sets()
    assert set(got) == expected and len(got) == len(expected)
    assert all(0 not in s for s in got)


@pytest.mark.parametrize("labels,fragment", [
    ([1, 2], "cannot occur together (hand form)"),
    ([7, 8], "posture"),
    ([10, 12], "depth"),
    ([9, 13], "hand location"),
    ([0, 4], "Correct"),
    ([4, 5, 6, 11, 1], "at most 4"),
    ([14], "unknown class"),
    ([3, 3], "repeated"),
    ([], "empty"),
])
def test_impossible_sets_are_explained(labels, fragment):
    problem = tx.label_set_problem(labels)
    assert problem is not None and fragment in problem
    with pytest.raises(tx.LabelError):
        tx.check_label_set(labels)


def test_parse_format_multi_hot_round_trip():
    assert tx.parse_labels("10;3") == (3, 10)
    assert tx.format_labels((10, 3)) == "3;10"
    v = tx.multi_hot((3, 10))
    assert v.dtype == np.uint8 and v.sum() == 2 and v[3] == v[10] == 1
    assert tx.from_multi_hot(v) == (3, 10)
    with pytest.raises(tx.LabelError, match="not integers"):
        tx.parse_labels("3;x")
