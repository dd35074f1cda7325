"""The assistant's numbers (issue 19): the guideline wording of rate and depth, how sure, and
a real regression run measuring a take next to the error model (tiny synthetic chain)."""
from __future__ import annotations

import numpy as np
import pytest

from assist.measure import format_measure, measure_dict, side_probabilities
from pipeline.guidelines import describe, status_of


@pytest.mark.parametrize("target, value, status, sentence", [
    ("rate", 86.2, "low", "Rate about 86 per minute: press faster (aim for 100\u2013120)"),
    ("rate", 99.6, "ok", "Rate about 100 per minute: good (100\u2013120)"),  # as it is shown
    ("rate", 112.0, "ok", "Rate about 112 per minute: good (100\u2013120)"),
    ("rate", 131.0, "high", "Rate about 131 per minute: press slower (aim for 100\u2013120)"),
    ("depth", 3.94, "low", "Depth about 3.9 cm: press deeper (aim for 5\u20136 cm)"),
    ("depth", 5.5, "ok", "Depth about 5.5 cm: good (5\u20136 cm)"),
    ("depth", 6.04, "ok", "Depth about 6.0 cm: good (5\u20136 cm)"),
    ("depth", 7.2, "high", "Depth about 7.2 cm: press less deep (aim for 5\u20136 cm)"),
])
def test_guideline_sentences(target, value, status, sentence):
    assert status_of(target, value) == status
    got_status, advice, text = describe(target, value)
    assert (got_status, text) == (status, sentence)
    assert advice == "good" if status == "ok" else advice in text


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: rate, depth"):
        describe("speed", 1.0)


def test_side_probabilities():
    edges = np.arange(50.0, 131.0, 10.0)  # rate bins, edges on 100 and 120
    p = np.array([0, 0.1, 0.2, 0.4, 0.2, 0.05, 0.05, 0.0])
    s = side_probabilities(p, edges, 100, 120)
    assert s == pytest.approx({"low": 0.9, "ok": 0.1, "high": 0.0})
    s = side_probabilities(np.array([0, 0, 0, 0, 0, 0.3, 0.3, 0.4]), edges, 100, 120)
    assert s == pytest.approx({"low": 0.0, "ok": 0.6, "high": 0.4})
    # a bin that straddles a limit is split by width: [95, 105) holds the limit 100 mid-way
    s = side_probabilities(np.array([0.5, 0.5]), np.array([85.0, 95.0, 105.0]), 100, 120)
    assert s == pytest.approx({"low": 0.75, "ok": 0.25, "high": 0.0})


def test_measure_dict_and_its_line():
    edges = np.arange(50.0, 131.0, 10.0)
    p = np.array([0, 0.02, 0.71, 0.2, 0.05, 0.02, 0, 0])
    m = measure_dict("rate", "regress_rate", 86.2, p, edges, {"1": 85.0, "2": 87.4})
    assert m["text"] == "Rate about 86 per minute: press faster (aim for 100\u2013120)"
    assert m["status"] == "low" and m["advice"] == "press faster" and m["guideline"] == [100, 120]
    assert m["sure_text"] == "98% sure it is below 100 per minute"
    assert [b["label"] for b in m["bins"]][:3] == ["50\u201360", "60\u201370", "70\u201380"]
    assert sum(b["probability"] for b in m["bins"]) == pytest.approx(1.0)
    assert format_measure(m) == ("Rate about 86 per minute: press faster (aim for 100\u2013120); "
                                 "98% sure it is below 100 per minute.")
    unsure = measure_dict("depth", "regress_depth", 5.2, np.array([0, 0, 0.02, 0.46, 0.39, 0.13,
                                                                  0, 0, 0, 0]),
                          np.arange(1.0, 12.0), {"1": 5.2})
    assert unsure["sure_text"] == "only 39% sure it is within 5\u20136 cm"
    plain = measure_dict("depth", "plain", 5.52, None, None, {"1": 5.52})
    assert plain["sure"] is None and plain["bins"] == [] and format_measure(plain).endswith("cm).")


def test_prediction_json_and_text_carry_the_measures():
    from assist.assistant import Prediction, format_text

    m = measure_dict("depth", "regress_depth", 4.2, None, None, {"1": 4.2})
    p = Prediction(["a.mp4"], [1], "run", "bce", "bce", "fixed", [], False, False, {}, None,
                   measures=[m])
    assert p.to_dict()["measures"] == [m]
    assert "Depth about 4.2 cm: press deeper (aim for 5\u20136 cm)." in format_text(p)
    assert Prediction(["a.mp4"], [1], "r", "bce", "bce", "fixed", [], False, False, {},
                      None).to_dict()["measures"] == []


def test_a_real_regression_run_measures_the_take(tiny_run):
    """Train a rate run on the tiny chain's features (the same recipe as the error model's), then
    the assistant gives the number, in Python and in its text; without the run it gives none."""
    from assist.assistant import Assistant, format_text
    from pipeline.cli import main as cli_main

    root = tiny_run["root"]
    rc = cli_main(["train", "--config", str(tiny_run["config"]), "task=regress", "target=rate",
                   "backbone=tsn_r18", "segments=4", "modalities=rgb,flow",
                   "text_encoder=test_hash", "steps=20", "hidden_dim=16",
                   f"runs_dir={root / 'regress_runs'}", f"text_cache_dir={root / 'text_cache'}"])
    assert rc == 0
    run = root / "regress_runs" / "regress_rate"
    a = Assistant.load(tiny_run["run"], measure_runs=(str(run),))
    assert a.measurers is not None and a.measurers.names == ["regress_rate"]
    assert a.measurers._extra == {}  # the same recipe: the error model's features are reused
    p = a.analyse(tiny_run["take"])
    if p.verdict == "unsuitable":
        assert p.measures == []
        return
    (m,) = p.measures
    assert m["target"] == "rate" and m["text"].startswith("Rate about ")
    assert set(m["per_view"]) == {"1", "2"} and m["status"] in ("low", "ok", "high")
    assert sum(b["probability"] for b in m["bins"]) == pytest.approx(1.0, abs=1e-3)
    assert format_measure(m) in format_text(p)
    assert p.to_dict()["measures"][0]["text"] == m["text"]
    # no run there: no number, no warning
    b = Assistant.load(tiny_run["run"], measure_runs=(str(root / "nothing"),))
    assert b.measurers is None and b.analyse(tiny_run["take"]).measures == []
