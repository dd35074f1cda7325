"""Prompt sentences: three kinds, two wordings, Correct's own sentences, ablations."""
import pytest

from pipeline.taxonomy import ADVICE, CLASSES
from train.prompts import (KINDS, NUM_WORDINGS, check_kinds, prompt, sentence, eval_prompt,
                           training_label_sets, wording_combos)


def test_each_kind_has_distinct_wordings():
    assert NUM_WORDINGS >= 2
    for labels in [(0,), (4,), (1, 10), (3, 5, 11), (2, 4, 7, 12)]:
        for kind in KINDS:
            texts = {sentence(kind, labels, w) for w in range(NUM_WORDINGS)}
            assert len(texts) == NUM_WORDINGS, (kind, labels)


def test_count_which_correct_content():
    labels = (4, 11)
    assert "two" in sentence("count", labels, 0)
    which = sentence("which", labels, 0)
    assert CLASSES[4].lower() in which and CLASSES[11].lower() in which
    fix = sentence("correct", labels, 0)
    assert ADVICE[4] in fix and ADVICE[11] in fix


def test_correct_has_its_own_sentences():
    for kind in KINDS:
        s = sentence(kind, (0,), 0)
        assert "correct" not in s.lower() or kind == "correct"
        assert s != sentence(kind, (1,), 0)
    assert "no" in sentence("count", (0,), 0).lower()


def test_shared_advice_said_once():
    # 7 (Squatting) and 8 (Standing) cannot co-occur, but 1 and 2 share advice with each other
    # only; a set with two different advices lists both once.
    s = sentence("correct", (2, 7), 0)
    assert s.count("kneel") == 1 and s.count("interlock the fingers") == 1


def test_ablation_drops_kinds():
    full = eval_prompt((3, 6), KINDS)
    assert len(full) == 3
    no_count = eval_prompt((3, 6), ("which", "correct"))
    assert no_count == full[1:]
    assert eval_prompt((3, 6), ("correct",)) == (full[2],)
    assert len(wording_combos(("which",))) == NUM_WORDINGS
    assert wording_combos(KINDS)[0] == (0, 0, 0)  # index 0 is the fixed test wording


def test_kind_order_is_canonical_and_errors_are_named():
    assert check_kinds(["correct", "count"]) == ("count", "correct")
    with pytest.raises(ValueError, match="valid kinds"):
        check_kinds(["colour"])
    with pytest.raises(ValueError, match="at least one"):
        check_kinds([])


def test_test_prompts_fixed_and_distinct_for_singles():
    tests = [eval_prompt((k,), KINDS) for k in range(14)]
    assert tests == [prompt((k,), KINDS, (0, 0, 0)) for k in range(14)]
    assert len(set(tests)) == 14


def test_training_label_sets_singles_first():
    sets = training_label_sets((2,))
    assert sets[:14] == [(k,) for k in range(14)]
    assert all(len(s) == 2 for s in sets[14:]) and len(sets) == 14 + 72
