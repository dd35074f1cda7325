"""The evaluation runner behind ``cprclip eval``.

For each run (``runs/<name>/``, read with :func:`train.runs.load_run`):

1. read the run's feature files through :mod:`pipeline.features` (several modalities are
   joined on ``video_id``);
2. score the test split (composite-error clips) and the val split (held-out single-class clips)
   with every score kind the run has (``clip``: prompt similarity; ``bce``: the BCE head);
3. per score kind: test mAP and MMIT mAP per video, per take after view fusion (mean and max),
   by number of errors and by view;
4. per score kind, the operating point, on val only (:mod:`evaluate.operating`): a calibration
   of the scores, the marks of every candidate rule, the rule that wins on composites imagined
   from the val singles (:func:`train.data.imagine`, the training stage's own imagination);
5. the unsuitable-input check (:mod:`evaluate.ood`) fitted on the training videos, its limits
   on val, saved as ``runs/<name>/ood.npz``;
6. the decisions on test made by :func:`evaluate.decide.decide`, the assistant's own function
   (view fusion, calibration, marks, exclusive groups, at most 4, the input check): precision,
   recall, F1, exact sets, verdicts, per class; calibration error (ECE) on val and test;
7. write ``runs/<name>/metrics.json`` and ``runs/<name>/thresholds.json`` (the operating point
   of each head, tied to the checkpoint's sha256; read by ``predict`` and ``serve``);

then write one report folder for all runs (:mod:`evaluate.report`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from evaluate import metrics as M
from evaluate.calibration import PROBABILITY_HEADS
from evaluate.decide import (OOD_FILE, THRESHOLDS_FILE, THRESHOLDS_VERSION, VERDICTS,
                             SYNTHETIC_NOTE, OperatingPoint, decide_many, synthetic_sources,
                             zscore_predictions)  # noqa: F401 - zscore_predictions: re-exported
from evaluate.operating import Units, choose_operating_point, fallback_point, imagined_takes
from evaluate.report import (Entry, best_entry, comparison_rows, decision_rows, pick_examples,
                             read_zeroshot, text_table, write_report)
from pipeline.atomic import write_atomic
from pipeline.config import check_fields, check_range, check_seed, to_dict
from pipeline.features import (FeatureRecipe, FeatureSet, is_random_init, join, read_features,
                               takes_known)
from pipeline.provenance import code_version, sha256_file
from pipeline.taxonomy import CLASSES

log = logging.getLogger(__name__)

# Choice fields of [eval]; the first two name the rows of evaluate.metrics'
# NO_POSITIVE_POLICIES and THRESHOLD_RULES (tests/pipeline/test_config.py keeps them in step).
NoPositivePolicy = Literal["skip", "zero"]
ThresholdRule = Literal["auto", "calibrated_global", "imagined_f1", "calibrated_half", "val_f1",
                        "calibrated_precision"]
CalibrationMethod = Literal["platt", "isotonic"]
DecisionFusion = Literal["mean", "max", "none"]
DECISION_FUSIONS: tuple[str, ...] = get_args(DecisionFusion)
# rows of the comparison: the method first, then the baselines; per run, prompt scores first
MODEL_ORDER = ("cpr_clip", "cpr_clip_plus", "bce", "imaginenet_fc")
HEAD_ORDER = {"clip": 0, "clip_sets": 1, "bce": 2}


@dataclass(frozen=True)
class EvalConfig:
    """``[eval]`` section."""

    SECTION: ClassVar[str] = "eval"

    # where `cprclip train` put its runs; also a [common] key
    runs_dir: str = "runs"
    # one folder for the Markdown/HTML report and its PNGs
    report_dir: str = "report"
    # run folder names (under runs_dir) or paths; empty = every run under runs_dir with a checkpoint
    runs: tuple[str, ...] = ()
    # folders under runs_dir to skip (fine-tuning no longer writes there: it has finetune_dir)
    exclude: tuple[str, ...] = ()
    # what a class/sample without positives does to a mean AP (evaluate.metrics.NO_POSITIVE_POLICIES);
    # "skip" is the CPR-Coach convention ("Correct" never occurs in a composite clip)
    no_positive_policy: NoPositivePolicy = "skip"
    # how per-class marks are chosen (evaluate.metrics.THRESHOLD_RULES); auto = every rule is
    # tried on val and the best micro F1 on held-out imagined composites + singles is kept
    threshold_rule: ThresholdRule = "auto"
    # the micro precision a trainer needs (0 = none): auto then keeps the best F1 among the rules
    # that reach it on val, and the calibrated_precision rule aims at it (evaluate/operating.py)
    target_precision: float = 0.0
    # score -> probability per class, fitted on val (evaluate.calibration): platt has two
    # numbers per class, so it cannot overfit a small val split the way isotonic can
    calibration: CalibrationMethod = "platt"
    # weight of the imagined composites against the val singles when calibrating: the
    # assistant meets both, and neither should drown the other by sheer count
    calibration_composite_share: float = 0.5
    # composite takes imagined from val singles per draw (two draws: fit, then compare rules)
    imagined_takes: int = 500
    # the calibrated "Correct" probability a take needs before it is declared correct
    correct_level: float = 0.5
    # an error this close below its mark (in probability) blocks "correct": the take is "not sure"
    near_margin: float = 0.1
    # bins of the expected calibration error and the reliability plot
    ece_bins: int = 10
    # unsuitable input (evaluate.ood): k-th nearest training video; limit = this quantile of
    # the val videos' distances; a video is unsuitable above slack * limit (slack > 1: the
    # test takes are new people doing new error combinations, a little further than val)
    ood_k: int = 1
    ood_quantile: float = 0.99
    ood_slack: float = 1.2
    # seeds the imagined takes ([common] seed)
    seed: int = 0
    # view fusion for decisions: thresholds are chosen on val takes fused this way and applied to
    # test takes fused the same way; "mean" matches what `cprclip predict` does with 1-4 views
    decision_fusion: DecisionFusion = "mean"
    # threshold of a class without a positive val clip, for probability-like (bce) scores
    bce_default_threshold: float = 0.5
    # the same for similarity (clip) scores: a z-score over the 14 classes of one clip (see
    # `fallback_thresholds`); also predict's rule when a run has no thresholds.json
    clip_fallback_z: float = 1.0
    # split names in the feature files
    test_split: str = "test"
    val_split: str = "val"

    def __post_init__(self) -> None:
        check_fields(self)
        check_seed(self)
        check_range(self, "bce_default_threshold", ge=0, le=1)  # a probability
        for key in ("calibration_composite_share", "correct_level", "near_margin"):
            check_range(self, key, ge=0, le=1)
        check_range(self, "imagined_takes", ge=0)
        check_range(self, "target_precision", ge=0, lt=1)
        check_range(self, "ece_bins", ge=1)
        check_range(self, "ood_k", ge=1)
        check_range(self, "ood_quantile", gt=0, le=1)
        check_range(self, "ood_slack", gt=0)


class EvalError(RuntimeError):
    """A run that cannot be evaluated; the message names the run and the problem."""


# --- finding and loading runs ---------------------------------------------------------------

def _load_run(run_dir: Path):
    """The train stage's reader (imported lazily: eval must start even while train is absent)."""
    from train.runs import load_run

    return load_run(run_dir)


def has_checkpoint(run_dir: Path) -> bool:
    return any(run_dir.glob("checkpoint*.safetensors")) or (run_dir / "checkpoint").exists()


def find_runs(cfg: EvalConfig) -> list[Path]:
    """The run folders to evaluate, in name order."""
    root = Path(cfg.runs_dir)
    if cfg.runs:
        out = []
        for name in cfg.runs:
            p = Path(name)
            p = p if p.is_dir() else root / name
            if not p.is_dir():
                raise EvalError(f"run {name!r}: no folder {p}")
            out.append(p)
        return out
    if not root.is_dir():
        raise EvalError(f"runs_dir {root} does not exist; run 'cprclip train' first")
    # hidden folders are train's work in progress (.<name>.new/), never a run to report
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name not in cfg.exclude and has_checkpoint(p))


@functools.lru_cache(maxsize=32)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def file_sha256(path: str | Path) -> str:
    st = os.stat(path)
    return _file_sha256(str(path), st.st_mtime_ns, st.st_size)


def read_run_features(feature_files: dict[str, Path],
                      recipes: dict[str, FeatureRecipe] | None = None) -> dict[str, FeatureSet]:
    """Read every modality's features and align them on video_id (first modality's order).

    ``recipes``: what the run trained on; a file now made by another backbone is refused."""
    sets: dict[str, FeatureSet] = {}
    for modality, path in feature_files.items():
        expect = {"modality": modality}
        want = (recipes or {}).get(modality)
        if want is not None and want.backbone:
            expect["backbone"] = want.backbone
        sets[modality] = read_features(path, expect=expect)
    names = list(sets)
    base = sets[names[0]]
    for m in names[1:]:
        base, _ = join(base, sets[m])
    return {m: (base if i == 0 else join(base, sets[m])[1]) for i, m in enumerate(names)}


# --- metrics of one score matrix ------------------------------------------------------------

def _ranking_metrics(scores: np.ndarray, labels: np.ndarray, policy: str,
                     views: np.ndarray | None = None) -> dict:
    mp = M.mean_average_precision(scores, labels, policy)
    mm = M.mmit_mean_average_precision(scores, labels, policy)
    out = {"map": {**mp.to_dict(), "n_rows": len(scores)},
           "mmit_map": {**mm.to_dict(), "n_rows": len(scores)}}
    groups = M.grouped_map(scores, labels, M.number_of_errors(labels), policy)
    out["by_errors"] = {str(k): {"n": g["n"], "map": _f(g["map"].value),
                                 "mmit_map": _f(g["mmit_map"].value)} for k, g in groups.items()}
    if views is not None:
        gv = M.grouped_map(scores, labels, views, policy)
        out["by_view"] = {str(k): {"n": g["n"], "map": _f(g["map"].value),
                                   "mmit_map": _f(g["mmit_map"].value)} for k, g in gv.items()}
    return out


def _f(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _units(scores, labels, take_id, how: str):
    """(scores, labels, ids) of the decision units: takes fused by ``how``, or videos."""
    if how == "none":
        return scores, labels, np.asarray(take_id)
    f = M.fuse_views(scores, labels, take_id, how)
    return f.scores, f.labels, f.take_id


def _fuse(scores, labels, take_id, how: str):
    s, y, _ = _units(scores, labels, take_id, how)
    return s, y


def _checked_units(scores, labels, take_id, how: str, bad: np.ndarray | None):
    """:func:`_units` after the input check, as the assistant fuses
    (:func:`evaluate.decide.fuse_checked_views`): the views that failed it are left out of
    their take's fusion unless all of them did. Returns (scores, labels, ids, unsuitable (K,)
    bool or None)."""
    if bad is None:
        return (*_units(scores, labels, take_id, how), None)
    if how == "none":
        return (*_units(scores, labels, take_id, how), np.asarray(bad, dtype=bool))
    take_id = np.asarray(take_id)
    _, inv = np.unique(take_id, return_inverse=True)
    all_bad = np.bincount(inv, weights=~bad, minlength=inv.max() + 1) == 0
    use = ~bad | all_bad[inv]  # every take keeps a view, so the takes and their order stay
    s, y, ids = _units(scores[use], labels[use], take_id[use], how)
    return s, y, ids, all_bad


def _unit_count(flags: np.ndarray, take_id: np.ndarray, how: str) -> np.ndarray:
    """(K,) how many of each unit's videos are flagged."""
    if how == "none":
        return np.asarray(flags, dtype=np.int64)
    _, inv = np.unique(np.asarray(take_id), return_inverse=True)
    return np.bincount(inv, weights=flags, minlength=inv.max() + 1).astype(np.int64)


def _unit_max(values: np.ndarray, take_id: np.ndarray, how: str) -> np.ndarray:
    """(K,) the largest per-video value of each unit, in the units' order (sorted take ids)."""
    if how == "none":
        return np.asarray(values, dtype=np.float64)
    _, inv = np.unique(np.asarray(take_id), return_inverse=True)
    out = np.full(inv.max() + 1 if len(inv) else 0, -np.inf)
    np.maximum.at(out, inv, values)
    return out


@dataclass
class HeadResult:
    """What :func:`evaluate_head` found for one score kind.

    ``pred``/``true``: the (K, C) 0/1 sets the user is told about and the true ones, per
    decision unit (test takes fused by ``decision_fusion``, or videos); ``unit_scores`` (K, C)
    raw, ``unit_probs`` (K, C) calibrated (None when uncalibrated), ``verdicts`` (K,),
    ``unit_ids`` (K,), ``unit_ratio`` (K,) the input check's ratio (None without a check)."""

    metrics: dict
    thresholds: dict
    op: OperatingPoint
    pred: np.ndarray
    true: np.ndarray
    unit_scores: np.ndarray
    unit_probs: np.ndarray | None
    verdicts: list[str]
    unit_ids: np.ndarray
    unit_ratio: np.ndarray | None = None


def _calibration_figures(probs: np.ndarray, labels: np.ndarray, bins: int) -> dict:
    b = M.reliability_bins(probs, labels, bins)
    return {"ece": _f(M.expected_calibration_error(probs, labels, bins)), "n": int(probs.size),
            "bins": {k: [_f(v) for v in np.asarray(a, dtype=np.float64)] for k, a in b.items()}}


def evaluate_head(head: str, test: dict[str, np.ndarray], val: dict[str, np.ndarray] | None,
                  cfg: EvalConfig, imagined: dict[str, dict[str, np.ndarray]] | None = None,
                  test_ratio: np.ndarray | None = None, ood_slack: float | None = None
                  ) -> HeadResult:
    """All metrics of one score kind, and its operating point.

    ``test``/``val`` hold ``scores`` (N, C), ``labels`` (N, C), ``take_id`` (N,), ``view`` (N,);
    ``imagined``: ``{"tune"|"compare": {scores, labels, take_id}}`` per video, composites
    imagined from val (:mod:`evaluate.operating`); ``test_ratio`` (N,): the input check's ratio
    of each test video, unsuitable above ``ood_slack``. The decisions on test are made by
    :func:`evaluate.decide.decide`, exactly as the assistant makes them.
    """
    policy = cfg.no_positive_policy
    how = cfg.decision_fusion
    s, y = test["scores"], test["labels"]
    res: dict[str, Any] = {"test": {"video": _ranking_metrics(s, y, policy, test["view"])}}
    # rows whose takes are unknown (imported features) cannot be fused: evaluate_run then
    # sets decision_fusion = "none" and says so
    for fusion in M.FUSIONS if takes_known(test["take_id"]) else ():
        fs, fy = _fuse(s, y, test["take_id"], fusion)
        res["test"][f"take_{fusion}"] = _ranking_metrics(fs, fy, policy)
    # the operating point, on val only
    judge = None
    if val is not None and len(val["scores"]):
        res["val"] = {"video": _ranking_metrics(val["scores"], val["labels"], policy)}
        singles = Units(*_fuse(val["scores"], val["labels"], val["take_id"], how))
        draws = {k: Units(*_fuse(d["scores"], d["labels"], d["take_id"], how))
                 for k, d in (imagined or {}).items() if len(d["scores"])}
        op, info = choose_operating_point(head, singles, draws.get("tune"), draws.get("compare"),
                                          cfg)
        judge = Units.join(singles, draws.get("compare"))
        n_val = len(singles)
    else:
        op = fallback_point(head, cfg)
        info = {"rows": [], "chosen": op.rule, "val_f1": None, "uncalibrated": list(CLASSES),
                "compared_on": "nothing (no val rows)", "fitted_on": "nothing (no val rows)"}
        n_val = 0
    # decisions on test, by the assistant's own function
    unit = "video" if how == "none" else f"take_{how}"
    vbad = None if test_ratio is None or ood_slack is None else np.asarray(test_ratio) > ood_slack
    ds, dy, ids, flags = _checked_units(s, y, test["take_id"], how, vbad)
    unit_ratio = None if vbad is None else _unit_max(test_ratio, test["take_id"], how)
    pred, verdicts = decide_many(ds, op, flags)
    figures = rule_figures_on(pred, verdicts, dy)
    # views that failed the input check inside takes that kept other views
    figures["views_left_out"] = 0 if vbad is None or flags is None else int(
        vbad.sum() - (_unit_count(vbad, test["take_id"], how)[flags]).sum())
    per = M.per_class_prf(pred, dy)
    ap = M.average_precision(ds, dy)
    res["decisions"] = {
        "unit": unit, "rule": op.rule, unit: figures,
        "per_class": {"precision": [float(v) for v in per["precision"]],
                      "recall": [float(v) for v in per["recall"]],
                      "f1": [float(v) for v in per["f1"]],
                      "support": [int(v) for v in per["support"]],
                      "predicted": [int(v) for v in per["predicted"]],
                      "ap": [_f(v) for v in ap],
                      "chance_ap": [float(v) for v in dy.mean(axis=0)] if len(dy) else None},
    }
    if unit != "video":
        vflags = None if flags is None else test_ratio > ood_slack
        vpred, vverdicts = decide_many(s, op, vflags)
        res["decisions"]["video"] = rule_figures_on(vpred, vverdicts, y)
    res["rules"] = {k: info[k] for k in ("chosen", "rows", "compared_on", "fitted_on")}
    probs = op.probabilities(ds)
    cal: dict[str, Any] = {"method": None if op.calibration is None else op.calibration.method,
                           "uncalibrated_classes": info["uncalibrated"]}
    if probs is not None:
        cal["test"] = _calibration_figures(probs[:, 1:], dy[:, 1:], cfg.ece_bins)
        if judge is not None and len(judge):
            cal["val"] = _calibration_figures(op.probabilities(judge.scores), judge.labels,
                                              cfg.ece_bins)
    if head in PROBABILITY_HEADS:
        cal["test_raw"] = _calibration_figures(np.clip(ds[:, 1:], 0, 1), dy[:, 1:], cfg.ece_bins)
    res["calibration"] = cal
    raw = op.raw_thresholds()
    thr_info: dict[str, Any] = {
        **op.to_dict(), "rule_text": M.THRESHOLD_RULES.get(op.rule, op.rule), "fusion": how,
        "classes": list(CLASSES),
        # the marks on the raw score scale (what older readers of this file take)
        "values": None if raw is None else [float(t) if np.isfinite(t) else None for t in raw],
        "val_f1": info["val_f1"],
        "defaulted": ([] if op.marks is None else
                      [int(k) for k in np.flatnonzero(~np.isfinite(np.asarray(op.marks)))]),
        "n_val_rows": n_val, "fitted_on": info["fitted_on"], "compared_on": info["compared_on"],
        "comparison": [{k: r[k] for k in ("rule", "precision_micro", "recall_micro", "f1_micro",
                                          "false_all_clear")} for r in info["rows"]],
    }
    res["thresholds"] = {k: v for k, v in thr_info.items() if k not in ("classes", "calibration")}
    return HeadResult(res, thr_info, op, pred, dy, ds, probs, verdicts, ids, unit_ratio)


def rule_figures_on(pred: np.ndarray, verdicts: list[str], labels: np.ndarray) -> dict[str, Any]:
    """Set metrics of the sets told to the user, the verdict counts and the false all-clears."""
    out = M.set_metrics(pred, labels)
    v = np.array(verdicts)
    out["verdicts"] = {k: int((v == k).sum()) for k in VERDICTS}
    out["false_all_clear"] = int(((v == "correct") & np.asarray(labels)[:, 1:].any(axis=1)).sum())
    return out


# --- one run, all runs ----------------------------------------------------------------------

def _split_arrays(sets: dict[str, FeatureSet], split: str) -> tuple[dict[str, np.ndarray], dict]:
    ref = next(iter(sets.values()))
    mask = ref.split == split
    feats = {m: fs.features[mask] for m, fs in sets.items()}
    meta = {"labels": ref.labels[mask], "take_id": ref.take_id[mask], "view": ref.view[mask],
            "video_id": ref.video_id[mask]}
    return feats, meta


def _prepared(run, sets: dict[str, FeatureSet], name: str, warnings: list[str]
              ) -> dict[str, FeatureSet]:
    """The stored features as the run's head reads them (``Run.prepare``: streams standardised
    per camera view), for every split at once: scores, imagined composites and the input check
    all see the same numbers."""
    norm = run.viewnorm
    if not norm:
        return sets
    ref = next(iter(sets.values()))
    prepared = run.prepare({m: fs.features for m, fs in sets.items()}, ref.view)
    if norm.unknown_views:
        warnings.append(f"camera view(s) {list(norm.unknown_views)} had no training videos: "
                        "standardised with all views' statistics")
        log.warning("%s: %s", name, warnings[-1])
    return {m: dataclasses.replace(fs, features=prepared[m]) for m, fs in sets.items()}


def evaluate_run(run_dir: Path, cfg: EvalConfig) -> tuple[dict, list[Entry]]:
    """Score one run and write its metrics.json and thresholds.json; returns (metrics, entries)."""
    t0 = time.time()
    run_dir = Path(run_dir)
    try:
        run = _load_run(run_dir)
    except Exception as e:  # noqa: BLE001 - name the run, whatever the loader raised
        raise EvalError(f"run {run_dir}: cannot load ({e})") from e
    name = getattr(run, "name", run_dir.name)
    warnings: list[str] = []
    recipes = run.feature_recipes
    for m, recipe in recipes.items():
        if is_random_init(recipe):
            warnings.append(f"the {m} features came from a randomly initialised backbone "
                            f"({recipe.backbone}); scores say little about real use")
    sets = read_run_features(run.feature_files, recipes)
    sets = _prepared(run, sets, name, warnings)
    files = {}
    for m, path in run.feature_files.items():
        sha = file_sha256(path)
        files[m] = {"path": str(path), "sha256": sha}
        want = run.feature_attrs.get(m, {}).get("sha256")
        if want and want != sha:
            warnings.append(f"{path} changed since training (sha256 {sha[:12]} vs "
                            f"{want[:12]}); retrain the run on the current features")
    for w in warnings:
        log.warning("%s: %s", name, w)
    test_x, test_meta = _split_arrays(sets, cfg.test_split)
    val_x, val_meta = _split_arrays(sets, cfg.val_split)
    if not (takes_known(test_meta["take_id"]) and takes_known(val_meta["take_id"])):
        warnings.append("the feature files do not say which clips are views of one take "
                        "(imported features): view fusion is skipped, decisions are per video")
        log.warning("%s: %s", name, warnings[-1])
        cfg = dataclasses.replace(cfg, decision_fusion="none")
    if not len(test_meta["labels"]):
        raise EvalError(f"run {name}: no '{cfg.test_split}' rows in {list(files.values())[0]['path']}")
    test_scores = run.scores(test_x)
    val_scores = run.scores(val_x) if len(val_meta["labels"]) else {}
    if not len(val_meta["labels"]):
        warnings.append(f"no '{cfg.val_split}' rows: the marks fall back to fixed ones, "
                        "uncalibrated (the assistant then never declares a take correct)")
    heads = [h for h in test_scores if test_scores[h] is not None]
    if not heads:
        raise EvalError(f"run {name}: Run.scores returned no score matrix")
    imagined = _imagined_scores(run, val_x, val_meta, heads, cfg) if val_scores else {}
    ood, ood_info, test_ratio = _input_check(run_dir, sets, val_x, test_x, cfg, name)
    synthetic = synthetic_sources(recipes)
    if synthetic:
        warnings.append(SYNTHETIC_NOTE + f" (features of {', '.join(synthetic)})")
        log.warning("%s: %s", name, warnings[-1])
    ckpt = run_dir / "checkpoint.safetensors"
    ckpt_sha = file_sha256(ckpt) if ckpt.is_file() else None
    provenance = _provenance(run, run_dir, ckpt_sha, recipes, synthetic)
    result: dict[str, Any] = {
        "run": name, "model": run.model_name, "run_dir": str(run_dir),
        # the checkpoint these figures are for; predict ignores them for another one
        "checkpoint": {"path": ckpt.name, "sha256": ckpt_sha},
        "eval_config": to_dict(cfg), "code_version": code_version(),
        "feature_files": files, "warnings": warnings, "provenance": provenance,
        "classes": list(CLASSES), "heads": {}, "ood": ood_info,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    thresholds: dict[str, Any] = {
        "version": THRESHOLDS_VERSION, "run": name, "model": run.model_name,
        "checkpoint": {"path": ckpt.name, "sha256": ckpt_sha},
        "code_version": code_version(), "created": result["created"],
        "ood": None if ood is None else {"file": OOD_FILE, "sha256": file_sha256(run_dir / OOD_FILE),
                                         **ood.summary()},
        "heads": {}}
    entries = []
    for head in heads:
        s = np.asarray(test_scores[head], dtype=np.float64)
        if s.shape != test_meta["labels"].shape:
            raise EvalError(f"run {name}: '{head}' scores {s.shape}, expected "
                            f"{test_meta['labels'].shape}")
        val = None
        if head in val_scores:
            val = dict(val_meta, scores=np.asarray(val_scores[head], dtype=np.float64))
        hr = evaluate_head(head, dict(test_meta, scores=s), val, cfg,
                           imagined={k: d[head] for k, d in imagined.items() if head in d},
                           test_ratio=test_ratio, ood_slack=None if ood is None else ood.slack)
        result["heads"][head] = hr.metrics
        thresholds["heads"][head] = hr.thresholds
        entries.append(Entry(name, run.model_name, head, hr.metrics, s,
                             test_meta["labels"].astype(np.uint8), hr.pred, hr.true,
                             list(warnings), unit_scores=hr.unit_scores, unit_probs=hr.unit_probs,
                             verdicts=hr.verdicts, unit_ids=hr.unit_ids, op=hr.op,
                             provenance=provenance, ood=ood_info, unit_ratio=hr.unit_ratio))
    result["seconds"] = round(time.time() - t0, 3)
    _write_json(run_dir / "metrics.json", result)
    _write_json(run_dir / THRESHOLDS_FILE, thresholds)
    log.info("%s: %s (%.1f s)", name, ", ".join(
        f"{h} mAP {100 * (result['heads'][h]['test']['video']['map']['value'] or 0):.1f}"
        for h in heads), result["seconds"])
    return result, entries


def _imagined_scores(run, val_x: dict[str, np.ndarray], val_meta: dict, heads: list[str],
                     cfg: EvalConfig) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{"tune"|"compare": {head: {scores, labels, take_id}}}``: the run's scores of two draws
    of composites imagined from the val singles (:func:`evaluate.operating.imagined_takes`)."""
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    take_id, view = val_meta["take_id"], val_meta["view"]
    if not takes_known(take_id):  # imported features: every video is a take of its own
        take_id, view = val_meta["video_id"], np.ones(len(take_id), dtype=np.int64)
    for draw, key in ((1, "tune"), (2, "compare")):
        parts: dict[str, list[np.ndarray]] = {h: [] for h in heads}
        labels, ids = [], []
        for feats, y, take in imagined_takes(val_x, val_meta["labels"], take_id, view,
                                             cfg.imagined_takes,
                                             dict(run.config or {}), cfg.seed, draw):
            sc = run.scores(feats)
            for h in heads:
                parts[h].append(np.asarray(sc[h], dtype=np.float64))
            labels.append(y)
            ids.append(take)
        if not labels:
            continue
        y, take = np.concatenate(labels), np.concatenate(ids)
        out[key] = {h: {"scores": np.concatenate(parts[h]), "labels": y, "take_id": take}
                    for h in heads}
    return out


def _input_check(run_dir: Path, sets: dict[str, FeatureSet], val_x: dict[str, np.ndarray],
                 test_x: dict[str, np.ndarray], cfg: EvalConfig, name: str):
    """Fit the unsuitable-input check on the training videos, save it as ``ood.npz`` next to
    the run, and measure it. Returns ``(reference or None, summary, test ratios (N,) or None)``."""
    from evaluate.ood import fit_ood

    train_x, _ = _split_arrays(sets, "train")
    try:
        ood, val_ratio = fit_ood(train_x, val_x if len(next(iter(val_x.values()))) else None,
                                 cfg.ood_k, cfg.ood_quantile, cfg.ood_slack, seed=cfg.seed)
    except ValueError as e:
        log.warning("%s: no unsuitable-input check (%s)", name, e)
        return None, {"error": str(e)}, None
    ood.save(run_dir / OOD_FILE)
    test_ratio = ood.ratios(test_x)
    info = {**ood.summary(),
            "val_flagged": float(np.mean(val_ratio > ood.slack)) if len(val_ratio) else None,
            "test_flagged_videos": float(np.mean(test_ratio > ood.slack)),
            "test_ratio_max": float(test_ratio.max()) if len(test_ratio) else None,
            "val_ratio_max": float(val_ratio.max()) if len(val_ratio) else None}
    return ood, info, test_ratio


def _provenance(run, run_dir: Path, ckpt_sha: str | None, recipes: dict[str, FeatureRecipe],
                synthetic: list[str]) -> dict[str, Any]:
    """Where the run came from, for the report: commit, date, backbone, init, seed."""
    record = getattr(run, "record", None) or {}
    ckpt = run_dir / "checkpoint.safetensors"
    trained = (time.strftime("%Y-%m-%d %H:%M", time.localtime(ckpt.stat().st_mtime))
               if ckpt.is_file() else "")
    return {
        "run": run.name if hasattr(run, "name") else run_dir.name, "model": run.model_name,
        "code_version": str(record.get("code_version", "")), "trained": trained,
        "backbone": ", ".join(f"{r.backbone} ({m})" for m, r in recipes.items()),
        "init": ", ".join(sorted({r.init + (f" {r.checkpoint_sha256[:12]}" if not r.random_init
                                            and r.checkpoint_sha256 else "")
                                  for r in recipes.values()})),
        "dataset": ", ".join(sorted({str(r.config.get("dataset", "")) or "?"
                                     for r in recipes.values()})),
        "synthetic": bool(synthetic),
        "seed": (run.config or {}).get("seed"),
        "text_encoder": str(getattr(run, "text_encoder", "") or ""),
        "checkpoint_sha256": ckpt_sha or "",
        # where the videos are: the example takes of the report show their frames
        "manifest": next((str(r.config.get("manifest", "")) for r in recipes.values()
                          if r.config.get("manifest")), ""),
        "decoder": next((str(r.config.get("decoder", "")) for r in recipes.values()
                         if r.config.get("decoder")), "auto"),
    }


def _write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, default=_json_default) + "\n")


def _json_default(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def run_eval(cfg: EvalConfig, command: str = "") -> tuple[list[Entry], list[str]]:
    """Evaluate every selected run and write the report. Returns (entries, errors)."""
    run_dirs = find_runs(cfg)
    if not run_dirs:
        raise EvalError(f"no runs with a checkpoint under {cfg.runs_dir}; run 'cprclip train' first")
    entries: list[Entry] = []
    errors: list[str] = []
    for d in run_dirs:
        try:
            _, es = evaluate_run(d, cfg)
            entries.extend(es)
        except Exception as e:  # noqa: BLE001 - one broken run must not hide the others
            log.error("%s", e)
            errors.append(str(e))
    entries.sort(key=lambda e: (MODEL_ORDER.index(e.model) if e.model in MODEL_ORDER
                                else len(MODEL_ORDER), e.run, HEAD_ORDER.get(e.head, 9)))
    if entries:
        best = best_entry(entries)
        best.example_frames = example_frames(best)
        write_report(entries, cfg.report_dir, notes=[f"run failed: {e}" for e in errors],
                     command=command, zeroshot=read_zeroshot(cfg.runs_dir))
    return entries, errors


def example_frames(entry: Entry, segments: int = 4, height: int = 96
                   ) -> dict[str, np.ndarray] | None:
    """{take id: (segments, h, w, 3) uint8}: frames at the segment centres of the first view of
    each example take (:func:`evaluate.report.pick_examples`), read through the manifest the
    features were made from. None when that manifest is not here; a video that cannot be read
    is left out with a warning (the report then shows the table only)."""
    from extract.decoders import open_video, read_frames
    from extract.sampling import segment_indices
    from pipeline.manifest import ManifestError, parse_manifest

    manifest = (entry.provenance or {}).get("manifest")
    if not manifest or not Path(manifest).is_file():
        return None
    try:
        records, _ = parse_manifest(manifest, check_files=False, use_flow_index=False)
    except (ManifestError, OSError) as e:
        log.warning("example frames: %s", e)
        return None
    first: dict[str, Any] = {}
    for r in sorted(records, key=lambda r: r.view):
        first.setdefault(str(r.take_id), r)
    decoder = (entry.provenance or {}).get("decoder") or "auto"
    out = {}
    for _, i in pick_examples(entry):
        take = str(entry.unit_ids[i])
        rec = first.get(take)
        if rec is None or take in out:
            continue
        try:
            with open_video(rec.path, decoder) as v:
                n = v.num_frames
            idx = segment_indices(n, segments, 1).reshape(-1)
            out[take] = read_frames(rec.path, idx, decoder, resize_short=height)
        except Exception as e:  # noqa: BLE001 - a missing picture must not stop the report
            log.warning("example frames of %s: %s", take, e)
    return out


def format_tables(entries: list[Entry]) -> str:
    """The comparison and decision tables as fixed-width text (what `make all` ends with)."""
    h, r = comparison_rows(entries)
    dh, dr = decision_rows(entries)
    return ("Composite-error test results (AP in %; fused = views of a take pooled)\n"
            + text_table(h, r) + "\nWhat the assistant tells on the test takes (its own rule, "
            "chosen on val; %)\n" + text_table(dh, dr))
