"""What the user is told about one take: the one decision rule of eval, predict and serve.

``cprclip eval`` chooses an :class:`OperatingPoint` per run and head on val and stores it in
``runs/<name>/thresholds.json``; the assistant (``cprclip predict``, ``cprclip serve``) loads it
from there. Both then call :func:`decide` on a take's view-fused (C,) scores, so the figures the
report prints for a rule are the figures the assistant earns with it.

:func:`decide` returns a :class:`Decision` with one of four verdicts:

- ``unsuitable``: the video does not look like the chest compressions the model was trained on
  (:mod:`evaluate.ood`); no error list, whatever the scores say;
- ``errors``: at least one error reached its mark. Among them one error per exclusive group
  survives (the one furthest above its mark) and at most ``max_errors`` (4: no real take has
  more); the others are listed as dropped, with the reason;
- ``correct``: only when the scores are calibrated, no error reached its mark, no error is
  within ``near_margin`` of its mark, and the calibrated probability of "Correct" is at least
  ``correct_level``;
- ``not_sure``: everything else, with the closest candidates (the errors nearest their marks).

Marks live on the decision scale: calibrated probability when the operating point has a
calibration (:mod:`evaluate.calibration`), else the head's raw score (the fallback when eval has
not run: 0.5 on BCE probabilities, or the z-score rule for similarities).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluate.calibration import Calibration
from pipeline.taxonomy import CLASSES, CORRECT, EXCLUSIVE_GROUPS, MAX_COMPOSITE, NUM_CLASSES

VERDICTS = ("errors", "correct", "not_sure", "unsuitable")
THRESHOLDS_FILE = "thresholds.json"
OOD_FILE = "ood.npz"
THRESHOLDS_VERSION = 2
N_CANDIDATES = 3  # closest candidates named when not sure: enough to act on, few enough to read


def zscore_predictions(scores: np.ndarray, z: float) -> np.ndarray:
    """The threshold-free rule for similarity scores: a class is predicted when its score is at
    least ``z`` standard deviations above the mean of the clip's C scores, and the top class is
    always predicted. (N, C) -> (N, C) 0/1."""
    scores = np.asarray(scores, dtype=np.float64)
    mu = scores.mean(axis=1, keepdims=True)
    sd = scores.std(axis=1, keepdims=True) + 1e-12
    pred = (scores - mu) / sd >= z
    pred[np.arange(len(scores)), scores.argmax(axis=1)] = True
    return pred.astype(np.uint8)


@dataclass(frozen=True)
class OperatingPoint:
    """How one head's scores become a verdict.

    ``marks`` (C,): the level each class must reach, on the decision scale (calibrated
    probability with a ``calibration``, else the raw score; +inf = never reported); None = the
    z-score rule (:func:`zscore_predictions` with ``z``). ``rule`` names how the marks were
    chosen (:data:`evaluate.metrics.THRESHOLD_RULES`, or a fallback)."""

    head: str
    rule: str
    marks: np.ndarray | None
    calibration: Calibration | None = None
    correct_level: float = 0.5
    near_margin: float = 0.1
    z: float = 1.0
    max_errors: int = MAX_COMPOSITE

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def probabilities(self, scores: np.ndarray) -> np.ndarray | None:
        """Calibrated probabilities of (N, C) or (C,) raw scores (None when uncalibrated)."""
        return None if self.calibration is None else self.calibration(scores)

    def raw_thresholds(self) -> np.ndarray | None:
        """(C,) the marks on the head's raw score scale (+inf = never reported)."""
        if self.marks is None:
            return None
        if self.calibration is None:
            return np.asarray(self.marks, dtype=np.float64)
        return np.array([self.calibration.raw_threshold(c, float(m))
                         for c, m in enumerate(self.marks)])

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "scale": "probability" if self.calibrated else "score",
                "marks": None if self.marks is None else _finite_list(self.marks),
                "calibration": None if self.calibration is None else self.calibration.to_dict(),
                "correct_level": self.correct_level, "near_margin": self.near_margin,
                "z": self.z, "max_errors": self.max_errors}

    @classmethod
    def from_dict(cls, head: str, d: dict[str, Any]) -> "OperatingPoint":
        marks = d.get("marks")
        arr = None if marks is None else np.array(
            [np.inf if v is None else float(v) for v in marks], dtype=np.float64)
        if arr is not None and len(arr) != NUM_CLASSES:
            raise ValueError(f"{len(arr)} marks for {NUM_CLASSES} classes")
        cal = d.get("calibration")
        return cls(head, str(d.get("rule", "")), arr,
                   None if cal is None else Calibration.from_dict(cal),
                   float(d.get("correct_level", 0.5)), float(d.get("near_margin", 0.1)),
                   float(d.get("z", 1.0)), int(d.get("max_errors", MAX_COMPOSITE)))


def _finite_list(a: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)]


@dataclass
class Decision:
    """The verdict on one take (see the module docstring).

    ``errors``: reported error ids, furthest above the mark first (only for ``errors``);
    ``candidates``: errors below their marks but nearest to them (for ``not_sure``: the closest
    ones; for ``errors``: those within ``near_margin``); ``dropped``: errors above their marks
    left out (``{id, name, reason}``); ``values`` (C,) on the decision scale; ``margins`` (C,)
    value - mark (z-score - z under the z-score rule); ``reason``: one line for people on why
    the verdict is ``not_sure`` or ``unsuitable``."""

    verdict: str
    errors: list[int]
    candidates: list[int]
    dropped: list[dict[str, Any]]
    correct_detected: bool
    values: np.ndarray
    margins: np.ndarray
    probabilities: np.ndarray | None
    reason: str = ""

    def predicted_set(self) -> np.ndarray:
        """(C,) 0/1: the errors the user is told about."""
        out = np.zeros(len(self.values), dtype=np.uint8)
        out[self.errors] = 1
        return out


def _names(ids: list[int]) -> str:
    names = [CLASSES[c] for c in ids]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def decide(scores: np.ndarray, op: OperatingPoint, unsuitable: bool = False,
           unsuitable_reason: str = "") -> Decision:
    """The verdict on one take from its view-fused (C,) raw ``scores``.

    ``unsuitable``: the take failed the input check (:mod:`evaluate.ood`); ``unsuitable_reason``
    says why, in words for people."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (NUM_CLASSES,):
        raise ValueError(f"scores must be ({NUM_CLASSES},), got {s.shape}")
    probs = op.probabilities(s)
    if op.marks is None:
        values = s
        margins = (s - s.mean()) / (s.std() + 1e-12) - op.z
        detected = zscore_predictions(s[None], op.z)[0].astype(bool)
    else:
        values = probs if probs is not None else s
        marks = np.asarray(op.marks, dtype=np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf never occurs: values are finite
            margins = values - marks
        detected = values >= marks
    correct_detected = bool(detected[CORRECT])
    if unsuitable:
        return Decision("unsuitable", [], [], [], correct_detected, values, margins, probs,
                        unsuitable_reason or "the video does not look like chest compressions")
    errors = sorted((int(c) for c in np.flatnonzero(detected) if c != CORRECT),
                    key=lambda c: -margins[c])
    kept: list[int] = []
    dropped: list[dict[str, Any]] = []
    for c in errors:
        clash = next((k for k in kept for g in EXCLUSIVE_GROUPS.values() if c in g and k in g), None)
        if clash is not None:
            group = next(n for n, g in EXCLUSIVE_GROUPS.items() if c in g)
            dropped.append({"id": c, "name": CLASSES[c],
                            "reason": f"excludes {CLASSES[clash]} ({group}), which scored higher"})
        elif len(kept) >= op.max_errors:
            dropped.append({"id": c, "name": CLASSES[c],
                            "reason": f"at most {op.max_errors} errors occur together"})
        else:
            kept.append(c)
    below = sorted((c for c in range(1, NUM_CLASSES) if not detected[c]
                    and np.isfinite(margins[c])), key=lambda c: -margins[c])
    near = [c for c in below if margins[c] >= -op.near_margin]
    if kept:
        return Decision("errors", kept, near[:N_CANDIDATES], dropped, correct_detected, values,
                        margins, probs)
    closest = below[:N_CANDIDATES]
    if not op.calibrated:
        reason = ("no mistake reached its mark, but this model's scores are not calibrated, "
                  "so it cannot confirm that the compressions are correct")
    elif near:
        reason = f"no mistake reached its mark, but {_names(near[:N_CANDIDATES])} came close"
    elif probs[CORRECT] < op.correct_level:
        reason = (f"no mistake reached its mark, but the model is only "
                  f"{100 * probs[CORRECT]:.0f}% sure the compressions are correct (it needs "
                  f"{100 * op.correct_level:.0f}%)")
    else:
        return Decision("correct", [], [], dropped, correct_detected, values, margins, probs)
    return Decision("not_sure", [], closest, dropped, correct_detected, values, margins, probs,
                    reason)


def fuse_checked_views(per_view: np.ndarray, unsuitable: np.ndarray | None) -> np.ndarray:
    """(V, C) per-view scores -> (C,): the mean over the views that passed the input check (all
    views when none or every one did). A black or unrelated view must not drag the others'
    scores: it is left out, and the verdict rests on the rest."""
    s = np.asarray(per_view, dtype=np.float64)
    if unsuitable is None:
        return s.mean(axis=0)
    ok = ~np.asarray(unsuitable, dtype=bool)
    return s[ok].mean(axis=0) if ok.any() else s.mean(axis=0)


def decide_many(scores: np.ndarray, op: OperatingPoint, unsuitable: np.ndarray | None = None
                ) -> tuple[np.ndarray, list[str]]:
    """:func:`decide` on every row of (N, C) scores: the (N, C) 0/1 sets the user is told
    about, and the N verdicts. ``unsuitable`` (N,) bool, from the input check."""
    s = np.asarray(scores, dtype=np.float64)
    flags = np.zeros(len(s), dtype=bool) if unsuitable is None else np.asarray(unsuitable, bool)
    pred = np.zeros(s.shape, dtype=np.uint8)
    verdicts = []
    for i, row in enumerate(s):
        d = decide(row, op, bool(flags[i]))
        pred[i] = d.predicted_set()
        verdicts.append(d.verdict)
    return pred, verdicts


# --- runs/<name>/thresholds.json ------------------------------------------------------------

class ThresholdsError(ValueError):
    """A thresholds.json that cannot be used; the message names the file and the problem."""


class StaleThresholds(ThresholdsError):
    """A thresholds.json made for another checkpoint than the run's current one."""


def read_thresholds(run_dir: str | Path, checkpoint_sha256: str | None) -> dict[str, Any]:
    """The record of ``run_dir/thresholds.json``, checked against the run's checkpoint.

    Raises FileNotFoundError (no file), ThresholdsError (unreadable) or StaleThresholds (made
    for another checkpoint). A file from before calibration (no ``version``) is returned as is;
    :func:`operating_point_from` reads its raw thresholds."""
    path = Path(run_dir) / THRESHOLDS_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise ThresholdsError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("heads"), dict):
        raise ThresholdsError(f"{path}: no 'heads' table")
    want = (record.get("checkpoint") or {}).get("sha256")
    if want and checkpoint_sha256 and want != checkpoint_sha256:
        raise StaleThresholds(
            f"{path} was made for checkpoint sha256 {want[:12]}, but the run's checkpoint is now "
            f"{checkpoint_sha256[:12]}; run 'cprclip eval --run {Path(run_dir).name}' again")
    return record


def operating_point_from(record: dict[str, Any], head: str, path: str | Path = THRESHOLDS_FILE
                         ) -> OperatingPoint:
    """The operating point of ``head`` in a thresholds.json record (ThresholdsError if none)."""
    h = record["heads"].get(head)
    if not isinstance(h, dict):
        raise ThresholdsError(f"{path}: no '{head}' operating point "
                              f"(it has: {', '.join(record['heads']) or 'none'})")
    try:
        if record.get("version") is None:  # before calibration: raw per-class thresholds
            vals = h["values"]
            if vals is None:
                raise KeyError("values")
            thr = np.array([np.inf if v is None else float(v) for v in vals], dtype=np.float64)
            if len(thr) != NUM_CLASSES:
                raise ValueError(f"{len(thr)} thresholds for {NUM_CLASSES} classes")
            return OperatingPoint(head, str(h.get("rule", "val_f1")), thr)
        return OperatingPoint.from_dict(head, h)
    except (KeyError, ValueError, TypeError) as e:
        raise ThresholdsError(f"{path}: no usable '{head}' operating point ({e})") from None


def ood_from(record: dict[str, Any], run_dir: str | Path):
    """The run's :class:`evaluate.ood.OodReference` named by a thresholds.json record, or None
    when the record has none. ThresholdsError when its file is missing or changed."""
    from evaluate.ood import OodReference
    from pipeline.provenance import sha256_file

    info = record.get("ood")
    if not info:
        return None
    path = Path(run_dir) / info.get("file", OOD_FILE)
    try:
        sha = sha256_file(path)
    except OSError as e:
        raise ThresholdsError(f"{path}: the input check's reference is unreadable ({e})") from None
    if info.get("sha256") and sha != info["sha256"]:
        raise ThresholdsError(f"{path} changed since 'cprclip eval' wrote it; run eval again")
    try:
        return OodReference.load(path)
    except (OSError, ValueError, KeyError) as e:
        raise ThresholdsError(f"{path}: not an input-check reference ({e})") from None


# --- standing notes ---------------------------------------------------------------------------

SYNTHETIC_NOTE = ("This model learned only from computer-made (synthetic) videos. How well it "
                  "judges real people doing CPR has not been measured.")


def synthetic_sources(recipes: dict) -> list[str]:
    """The datasets among the run's feature recipes ({modality: FeatureRecipe}) that are
    synthetic: made by ``cprclip synth`` (a ``synth.json`` beside the manifest the features were
    extracted from) or named ``synthetic``. Whatever the backbone: a fine-tuned or ImageNet
    backbone does not make a head trained on drawn figures a judge of real people."""
    out = []
    for recipe in recipes.values():
        conf = recipe.config
        dataset = str(conf.get("dataset", ""))
        manifest = conf.get("manifest")
        made_by_synth = bool(manifest) and (Path(str(manifest)).parent / "synth.json").is_file()
        if (made_by_synth or dataset == "synthetic") and dataset not in out:
            out.append(dataset or str(manifest))
    return out
