"""Calibration: per-class maps from a head's raw score to the probability that the class is
present. Pure numpy: arrays in, arrays out.

Shapes: ``scores`` and ``labels`` (N, C); ``weights`` (N,). Two methods, fitted class by class
on val takes (see :mod:`evaluate.runner` for which takes):

- ``platt``: ``p = sigmoid(a * (x - mean) / scale + b)``, a logistic regression on the class's
  own (transformed) score -- a temperature and a bias per class. ``a`` is kept >= 0 so the map
  never turns a higher score into a lower probability; a small ridge on ``a`` keeps it finite
  when val separates the class perfectly.
- ``isotonic``: the weighted non-decreasing step function closest to the labels (pool adjacent
  violators), linearly interpolated between its steps and flat beyond its ends.

``transform`` says what the head's score is: ``logit`` for heads that already output
probabilities (``bce``, ``clip_sets``; the fit is then on log-odds), ``identity`` for
similarities. A class without both a positive and a negative among the fitting takes has no
calibration: its probability is 0, so it is never reported (and "Correct" never declared).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CALIBRATION_METHODS: dict[str, str] = {
    "platt": "a logistic map (temperature and bias) per class",
    "isotonic": "a non-decreasing step map per class (pool adjacent violators)",
}
# score kinds that are probabilities already (calibrated on their log-odds)
PROBABILITY_HEADS = ("bce", "clip_sets")
_EPS = 1e-6  # keeps logit() finite at probabilities of exactly 0 or 1


def transform_for(head: str) -> str:
    return "logit" if head in PROBABILITY_HEADS else "identity"


def _transform(x: np.ndarray, how: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if how == "logit":
        p = np.clip(x, _EPS, 1 - _EPS)
        return np.log(p) - np.log1p(-p)
    return x


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


# --- the two fits (one class: x, y, w are (N,)) ---------------------------------------------

def platt_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: float = 1e-3
              ) -> dict[str, float]:
    """Weighted logistic regression of ``y`` on standardised ``x`` by Newton's method.

    Minimises ``sum w * logloss + ridge * W / 2 * a**2`` (W = sum w) with ``a >= 0``.
    Returns ``{mean, scale, a, b}``."""
    x, y, w = (np.asarray(v, dtype=np.float64) for v in (x, y, w))
    W = float(w.sum())
    mean = float(np.average(x, weights=w))
    scale = float(np.sqrt(np.average((x - mean) ** 2, weights=w)))
    if scale <= 1e-12:  # a constant score says nothing: the class's base rate
        rate = float(np.clip(np.average(y, weights=w), _EPS, 1 - _EPS))
        return {"mean": mean, "scale": 1.0, "a": 0.0, "b": float(np.log(rate / (1 - rate)))}
    z = (x - mean) / scale
    theta = np.zeros(2)  # (a, b)
    lam = ridge * W

    def loss(t: np.ndarray) -> float:
        m = t[0] * z + t[1]
        # log(1 + e^m) - y m, written to stay finite
        return float(np.sum(w * (np.logaddexp(0.0, m) - y * m)) + 0.5 * lam * t[0] ** 2)

    cur = loss(theta)
    for _ in range(100):
        p = _sigmoid(theta[0] * z + theta[1])
        r = w * (p - y)
        g = np.array([np.sum(r * z) + lam * theta[0], np.sum(r)])
        h = w * p * (1 - p)
        H = np.array([[np.sum(h * z * z) + lam, np.sum(h * z)], [np.sum(h * z), np.sum(h)]])
        step = np.linalg.solve(H + 1e-12 * np.eye(2), g)
        t, new, val = 1.0, theta, cur
        while t > 1e-10:  # backtracking: Newton may overshoot on nearly separable classes
            new = theta - t * step
            val = loss(new)
            if val <= cur:
                break
            t *= 0.5
        if val > cur:
            break
        done = cur - val <= 1e-12 * max(1.0, abs(cur))
        theta, cur = new, val
        if done:
            break
    if theta[0] < 0:
        # The problem is convex, so with the unconstrained optimum at a < 0 the constrained
        # one lies on a = 0, where the best b is the log-odds of the base rate.
        rate = float(np.clip(np.average(y, weights=w), _EPS, 1 - _EPS))
        theta = np.array([0.0, np.log(rate / (1 - rate))])
    return {"mean": mean, "scale": scale, "a": float(theta[0]), "b": float(theta[1])}


def isotonic_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, list[float]]:
    """Weighted isotonic (non-decreasing) regression of ``y`` on ``x``; returns the knots
    ``{x: [...], y: [...]}`` (each step's first and last x, so steps stay flat)."""
    x, y, w = (np.asarray(v, dtype=np.float64) for v in (x, y, w))
    order = np.argsort(x, kind="stable")
    x, y, w = x[order], y[order], w[order]
    # tied x values are one point: their weighted mean label
    ux, inv = np.unique(x, return_inverse=True)
    wsum = np.bincount(inv, weights=w)
    ysum = np.bincount(inv, weights=w * y)
    keep = wsum > 0
    ux, wsum, ysum = ux[keep], wsum[keep], ysum[keep]
    # pool adjacent violators: a stack of blocks (value, weight, first x, last x)
    vals: list[float] = []
    wts: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for xi, wi, yi in zip(ux, wsum, ysum / wsum):
        vals.append(float(yi))
        wts.append(float(wi))
        lo.append(float(xi))
        hi.append(float(xi))
        while len(vals) > 1 and vals[-2] >= vals[-1]:
            v2, w2, h2 = vals.pop(), wts.pop(), hi.pop()
            lo.pop()
            v1, w1 = vals[-1], wts[-1]
            vals[-1] = (v1 * w1 + v2 * w2) / (w1 + w2)
            wts[-1] = w1 + w2
            hi[-1] = h2
    kx: list[float] = []
    ky: list[float] = []
    for v, a, b in zip(vals, lo, hi):
        kx.append(a)
        ky.append(v)
        if b > a:
            kx.append(b)
            ky.append(v)
    return {"x": kx, "y": ky}


# --- the calibration of one head ------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    """Per-class score -> probability maps of one head (see the module docstring).

    ``fitted`` (C,) says which classes have a map; ``params`` holds one dict per class
    (``{}`` where not fitted). ``__call__`` maps (N, C) or (C,) scores to probabilities."""

    method: str
    transform: str
    fitted: tuple[bool, ...]
    params: tuple[dict[str, Any], ...]

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        one = s.ndim == 1
        s = np.atleast_2d(s)
        if s.shape[1] != len(self.fitted):
            raise ValueError(f"scores have {s.shape[1]} classes, the calibration {len(self.fitted)}")
        x = _transform(s, self.transform)
        out = np.zeros_like(x)
        for c, (ok, p) in enumerate(zip(self.fitted, self.params)):
            if not ok:
                continue
            if self.method == "platt":
                out[:, c] = _sigmoid(p["a"] * (x[:, c] - p["mean"]) / p["scale"] + p["b"])
            else:
                out[:, c] = np.interp(x[:, c], p["x"], p["y"])
        return out[0] if one else out

    def raw_threshold(self, c: int, mark: float) -> float:
        """The lowest raw score of class ``c`` whose probability reaches ``mark`` (+inf when
        none does, -inf when every score does): the mark on the head's own scale."""
        if not np.isfinite(mark) or not self.fitted[c]:
            return float("inf")
        p = self.params[c]
        if self.method == "platt":
            if p["a"] <= 0:
                return float("-inf") if _sigmoid(p["b"]) >= mark else float("inf")
            m = float(np.clip(mark, _EPS, 1 - _EPS))
            x = p["mean"] + p["scale"] * (np.log(m / (1 - m)) - p["b"]) / p["a"]
        else:
            kx, ky = np.asarray(p["x"]), np.asarray(p["y"])
            if ky[0] >= mark:
                return float("-inf")
            i = int(np.searchsorted(ky, mark, side="left"))
            if i >= len(ky):
                return float("inf")
            # linear interpolation between knots i-1 and i
            x = kx[i - 1] + (mark - ky[i - 1]) / max(ky[i] - ky[i - 1], 1e-300) * (kx[i] - kx[i - 1])
        if self.transform == "logit":
            return float(_sigmoid(x))
        return float(x)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "transform": self.transform,
                "fitted": list(self.fitted), "params": list(self.params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        method, transform = d["method"], d["transform"]
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {method!r}; valid: "
                             f"{', '.join(CALIBRATION_METHODS)}")
        if transform not in ("logit", "identity"):
            raise ValueError(f"unknown calibration transform {transform!r}")
        fitted = tuple(bool(v) for v in d["fitted"])
        params = tuple(dict(p) for p in d["params"])
        if len(params) != len(fitted):
            raise ValueError("calibration: 'fitted' and 'params' differ in length")
        return cls(method, transform, fitted, params)


def fit_calibration(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
                    method: str = "platt", transform: str = "identity") -> Calibration:
    """Fit one map per class on (N, C) ``scores`` and 0/1 ``labels`` (``weights`` (N,))."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; valid: "
                         f"{', '.join(CALIBRATION_METHODS)}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must both be (N, C)")
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64)
    x = _transform(s, transform)
    fitted, params = [], []
    for c in range(s.shape[1]):
        pos = float((w * y[:, c]).sum())
        neg = float((w * (1 - y[:, c])).sum())
        if pos <= 0 or neg <= 0:
            fitted.append(False)
            params.append({})
            continue
        fit = platt_fit if method == "platt" else isotonic_fit
        fitted.append(True)
        params.append(fit(x[:, c], y[:, c], w))
    return Calibration(method, transform, tuple(fitted), tuple(params))
