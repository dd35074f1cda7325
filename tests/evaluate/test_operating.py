"""Choosing the operating point on val: imagined takes (train's own imagination) and the rule
comparison."""
import numpy as np
import pytest

from evaluate.operating import Units, choose_operating_point, imagined_takes
from evaluate.runner import EvalConfig
from pipeline.taxonomy import NUM_CLASSES, is_valid_label_set, multi_hot


def val_split(n_takes=28, views=(1, 2, 3), t=2, d=3):
    """Single-class val takes; view v of take j has features (j+1)*100 + v in dim 0."""
    feats, labels, take, view = [], [], [], []
    for j in range(n_takes):
        for v in views:
            x = np.zeros((t, d), np.float32)
            x[:, 0] = (j + 1) * 100 + v
            x[:, 1] = j % NUM_CLASSES
            feats.append(x)
            labels.append(multi_hot([j % NUM_CLASSES]))
            take.append(f"val{j}")
            view.append(v)
    return np.stack(feats), np.stack(labels), np.array(take), np.array(view)


def test_imagined_takes_use_train_imagination_and_keep_views_aligned(monkeypatch):
    import train.data

    calls = []
    real = train.data.imagine
    monkeypatch.setattr(train.data, "imagine", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    x, y, take, view = val_split()
    blocks = list(imagined_takes({"rgb": x[..., :2], "flow": x[..., 2:]}, y, take, view, 300,
                                 {"imagine_sizes": [2, 3], "mix": "mean", "mix_alpha": 1.0},
                                 seed=0, draw=1))
    assert calls and sum(calls) == 300  # train.data.imagine made every take
    feats, labels, ids = (np.concatenate([b[i]["rgb"] if i == 0 else b[i] for b in blocks])
                          for i in range(3))
    assert feats.shape == (900, 2, 2) and labels.shape == (900, NUM_CLASSES)
    per_take = feats[:, 0, 0].reshape(300, 3)
    # one draw mixes the same takes with the same weights in every view: view v - view 1 = v - 1
    np.testing.assert_allclose(per_take - per_take[:, :1], [[0, 1, 2]] * 300, atol=1e-3)
    assert (ids.reshape(300, 3) == ids.reshape(300, 3)[:, :1]).all()
    sets = [tuple(np.flatnonzero(r)) for r in labels[::3]]
    assert all(is_valid_label_set(s) and len(s) in (2, 3) and 0 not in s for s in sets)
    # another draw is another sample; the same draw is the same sample
    again = next(imagined_takes({"rgb": x[..., :2], "flow": x[..., 2:]}, y, take, view, 5,
                                {"imagine_sizes": [2, 3], "mix": "mean"}, seed=0, draw=1))
    other = next(imagined_takes({"rgb": x[..., :2], "flow": x[..., 2:]}, y, take, view, 5,
                                {"imagine_sizes": [2, 3], "mix": "mean"}, seed=0, draw=2))
    np.testing.assert_allclose(again[0]["rgb"], blocks[0][0]["rgb"][:15])
    assert not np.allclose(other[0]["rgb"], again[0]["rgb"])


def test_no_composites_from_a_single_error_class():
    x, y, take, view = val_split(n_takes=2)  # classes 0 and 1: nothing to mix
    assert list(imagined_takes({"rgb": x}, y, take, view, 10, {}, 0, 1)) == []


def _units(rng, sets, noise):
    y = np.stack([multi_hot(s) for s in sets])
    return Units(y + noise * rng.normal(size=y.shape), y)


def _val_draws():
    """56 val single takes and two imagined draws of 300 composites (seeded)."""
    from pipeline.taxonomy import composite_label_sets

    rng = np.random.default_rng(0)
    comp = composite_label_sets()
    singles = _units(rng, [(k % NUM_CLASSES,) for k in range(56)], 0.4)
    tune = _units(rng, [comp[i] for i in rng.integers(len(comp), size=300)], 0.4)
    compare = _units(rng, [comp[i] for i in rng.integers(len(comp), size=300)], 0.4)
    return singles, tune, compare


def test_rules_are_compared_on_the_held_out_draw_and_the_best_kept():
    singles, tune, compare = _val_draws()
    op, info = choose_operating_point("clip", singles, tune, compare, EvalConfig())
    rows = {r["rule"]: r for r in info["rows"]}
    assert list(rows) == ["calibrated_global", "imagined_f1", "calibrated_half", "val_f1"]
    top = max(r["f1_micro"] for r in rows.values())
    kept = next(r for r in rows.values() if r["f1_micro"] >= top - 0.01)  # first near the top
    assert op.rule == info["chosen"] == kept["rule"] and op.calibrated
    if op.rule == "calibrated_global":  # one mark for every error
        assert len(set(op.marks[1:][np.isfinite(op.marks[1:])])) == 1
    assert "300 imagined" in info["compared_on"]
    assert rows["imagined_f1"]["n"] == 56 + 300
    # a named rule is kept whatever the comparison says
    op2, _ = choose_operating_point("clip", singles, tune, compare,
                                    EvalConfig(threshold_rule="calibrated_half"))
    assert op2.rule == "calibrated_half"
    np.testing.assert_allclose(op2.marks[np.isfinite(op2.marks)], 0.5)
    # without imagined takes: only the rules that need none
    op3, info3 = choose_operating_point("clip", singles, None, None, EvalConfig())
    assert {r["rule"] for r in info3["rows"]} == {"calibrated_half", "val_f1"}


def test_global_mark_maximises_micro_f1_against_brute_force():
    from evaluate import metrics as M
    from evaluate.operating import global_mark

    rng = np.random.default_rng(5)
    y = (rng.random((80, NUM_CLASSES)) < 0.25).astype(int)
    p = np.clip(0.35 * y + 0.5 * rng.random(y.shape), 0, 1)
    g, f1 = global_mark(p, y)
    brute = {round(t, 2): M.set_metrics((p[:, 1:] >= t).astype(int), y[:, 1:])["f1_micro"]
             for t in np.arange(0.01, 1.0, 0.01)}
    assert f1 == pytest.approx(max(brute.values())) and brute[g] == pytest.approx(f1)


def test_config_rejects_out_of_range_values():
    from pipeline.config import ConfigError

    for bad in ({"correct_level": 1.5}, {"ood_slack": 0}, {"imagined_takes": -1},
                {"threshold_rule": "best"}, {"calibration": "beta"}):
        with pytest.raises((ConfigError, ValueError)):
            from pipeline.config import build

            build(EvalConfig, bad, "test")


def test_precision_mark_is_the_lowest_mark_that_reaches_the_target():
    from evaluate import metrics as M
    from evaluate.operating import precision_mark

    rng = np.random.default_rng(6)
    y = (rng.random((120, NUM_CLASSES)) < 0.25).astype(int)
    p = np.clip(0.35 * y + 0.5 * rng.random(y.shape), 0, 1)
    prec = {round(t, 2): M.set_metrics((p[:, 1:] >= t).astype(int), y[:, 1:])["precision_micro"]
            for t in np.arange(0.01, 1.0, 0.01) if (p[:, 1:] >= t).any()}
    for target in (0.5, 0.8, 0.95):
        g = precision_mark(p, y, target)
        assert prec[g] >= target
        assert all(v < target for t, v in prec.items() if t < g)  # nothing lower reaches it
    # out of reach: the mark of the highest precision
    assert prec[precision_mark(p, y, 1.01)] == max(prec.values())


def test_a_target_precision_keeps_only_the_rules_that_reach_it():
    singles, tune, compare = _val_draws()
    _, free = choose_operating_point("clip", singles, tune, compare, EvalConfig())
    best_p = max(r["precision_micro"] for r in free["rows"])
    target = round(min(0.97, best_p - 0.02), 2)
    op, info = choose_operating_point("clip", singles, tune, compare,
                                      EvalConfig(target_precision=target))
    rows = {r["rule"]: r for r in info["rows"]}
    assert "calibrated_precision" in rows  # built only when a target is set
    assert "calibrated_precision" not in {r["rule"] for r in free["rows"]}
    assert rows[op.rule]["precision_micro"] >= target
    reaching = [r for r in info["rows"] if r["precision_micro"] >= target]
    assert rows[op.rule]["f1_micro"] >= max(r["f1_micro"] for r in reaching) - 0.01
