"""Calibration maps against sklearn's logistic and isotonic regressions."""
import typing

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from evaluate.calibration import (CALIBRATION_METHODS, Calibration, fit_calibration,
                                  isotonic_fit, platt_fit)


def test_config_choices_match_the_table():
    from evaluate.runner import CalibrationMethod

    assert set(typing.get_args(CalibrationMethod)) == set(CALIBRATION_METHODS)


@pytest.mark.parametrize("seed", range(3))
def test_platt_matches_weighted_logistic_regression(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=400) * 3 + 1
    y = (rng.random(400) < 1 / (1 + np.exp(-(1.5 * x - 2)))).astype(float)
    w = rng.random(400) + 0.5
    p = platt_fit(x, y, w, ridge=0.0)
    z = (x - p["mean"]) / p["scale"]
    ref = LogisticRegression(C=1e12, tol=1e-10, max_iter=10_000).fit(z[:, None], y, sample_weight=w)
    assert p["a"] == pytest.approx(ref.coef_[0, 0], rel=1e-3)
    assert p["b"] == pytest.approx(ref.intercept_[0], abs=1e-3)


def test_platt_stays_finite_and_monotone():
    x = np.r_[np.zeros(5), np.ones(5)]
    p = platt_fit(x, x, np.ones(10))  # perfectly separated: the ridge keeps a finite
    assert np.isfinite(p["a"]) and p["a"] > 0
    q = platt_fit(x, 1 - x, np.ones(10))  # a higher score means less likely: flattened
    assert q["a"] == 0.0 and q["b"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_isotonic_matches_sklearn(seed):
    rng = np.random.default_rng(10 + seed)
    x = np.round(rng.normal(size=300), 1)  # ties
    y = (rng.random(300) < 1 / (1 + np.exp(-2 * x))).astype(float)
    w = rng.random(300) + 0.1
    knots = isotonic_fit(x, y, w)
    ref = IsotonicRegression(out_of_bounds="clip").fit(x, y, sample_weight=w)
    grid = np.linspace(-4, 4, 301)
    np.testing.assert_allclose(np.interp(grid, knots["x"], knots["y"]), ref.predict(grid),
                               atol=1e-9)


def test_fit_per_class_logit_transform_and_unfitted_classes():
    rng = np.random.default_rng(3)
    probs = rng.random((200, 3))
    labels = (rng.random((200, 3)) < probs).astype(int)
    labels[:, 2] = 0  # no positive: no map, probability 0
    cal = fit_calibration(probs, labels, method="platt", transform="logit")
    assert cal.fitted == (True, True, False)
    out = cal(probs)
    assert out.shape == (200, 3) and (out[:, 2] == 0).all()
    assert np.corrcoef(out[:, 0], probs[:, 0])[0, 1] > 0.99  # monotone in the score
    back = Calibration.from_dict(cal.to_dict())
    np.testing.assert_allclose(back(probs), out)
    assert cal.raw_threshold(2, 0.5) == np.inf
    with pytest.raises(ValueError, match="valid: platt, isotonic"):
        fit_calibration(probs, labels, method="beta")
