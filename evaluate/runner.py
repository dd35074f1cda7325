"""The evaluation runner behind ``cprclip eval``.

For each run (``runs/<name>/``, read with :func:`train.runs.load_run`):

1. read the run's feature files through :mod:`pipeline.features` (several modalities are
   joined on ``video_id``);
2. score the test split (composite-error clips) and the val split (held-out single-class clips)
   with every score kind the run has (``clip``: prompt similarity; ``bce``: the BCE head);
3. per score kind: test mAP and MMIT mAP per video, per take after view fusion (mean and max),
   by number of errors and by view; per-class thresholds chosen on val; precision, recall, F1
   and exact-set accuracy of the predicted error sets on test;
4. write ``runs/<name>/metrics.json`` and ``runs/<name>/thresholds.json`` (read by ``predict``);

then write one report folder for all runs (:mod:`evaluate.report`).
"""
from __future__ import annotations

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
from evaluate.decide import zscore_predictions
from evaluate.report import Entry, comparison_rows, decision_rows, text_table, write_report
from pipeline.atomic import write_atomic
from pipeline.config import check_fields, check_range, to_dict
from pipeline.features import FeatureRecipe, FeatureSet, is_random_init, join, read_features
from pipeline.provenance import code_version, sha256_file
from pipeline.taxonomy import CLASSES, NUM_CLASSES

log = logging.getLogger(__name__)

# Choice fields of [eval]; the first two name the rows of evaluate.metrics'
# NO_POSITIVE_POLICIES and THRESHOLD_RULES (tests/pipeline/test_config.py keeps them in step).
NoPositivePolicy = Literal["skip", "zero"]
ThresholdRule = Literal["val_f1"]
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
    # how per-class thresholds are chosen (evaluate.metrics.THRESHOLD_RULES)
    threshold_rule: ThresholdRule = "val_f1"
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
        check_range(self, "bce_default_threshold", ge=0, le=1)  # a probability


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
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and p.name not in cfg.exclude and has_checkpoint(p))


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


def fallback_thresholds(head: str, cfg: EvalConfig) -> np.ndarray | None:
    """A class's threshold when val cannot choose one. ``bce`` scores are probabilities: 0.5.
    ``clip`` similarities have no fixed scale, so there is no absolute fallback (None): the
    assistant then uses the z-score rule of :func:`evaluate.decide.zscore_predictions`."""
    if head == "bce":
        return np.full(NUM_CLASSES, cfg.bce_default_threshold)
    return None


def _fuse(scores, labels, take_id, how: str):
    if how == "none":
        return scores, labels
    f = M.fuse_views(scores, labels, take_id, how)
    return f.scores, f.labels


def evaluate_head(head: str, test: dict[str, np.ndarray], val: dict[str, np.ndarray] | None,
                  cfg: EvalConfig) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """All metrics of one score kind.

    ``test``/``val`` hold ``scores`` (N, C), ``labels`` (N, C), ``take_id`` (N,), ``view`` (N,).
    Returns ``(metrics, thresholds, pred, true)``; pred/true are the (K, C) 0/1 sets of the
    decision unit (test takes fused by ``cfg.decision_fusion``, or videos).
    """
    policy = cfg.no_positive_policy
    s, y = test["scores"], test["labels"]
    res: dict[str, Any] = {"test": {"video": _ranking_metrics(s, y, policy, test["view"])}}
    for how in M.FUSIONS:
        fs, fy = _fuse(s, y, test["take_id"], how)
        res["test"][f"take_{how}"] = _ranking_metrics(fs, fy, policy)
    # thresholds on val
    default = fallback_thresholds(head, cfg)
    thr_info: dict[str, Any] = {"rule": cfg.threshold_rule,
                                "rule_text": M.THRESHOLD_RULES[cfg.threshold_rule],
                                "fusion": cfg.decision_fusion, "classes": list(CLASSES)}
    if val is not None and len(val["scores"]):
        res["val"] = {"video": _ranking_metrics(val["scores"], val["labels"], policy)}
        vs, vy = _fuse(val["scores"], val["labels"], val["take_id"], cfg.decision_fusion)
        no_pos = vy.sum(axis=0) == 0
        fill = default if default is not None else np.zeros(NUM_CLASSES)
        thr, f1 = M.choose_thresholds(vs, vy, default=fill)
        if no_pos.any() and default is None:
            # similarity scores have no absolute default: put such a class out of reach and say so
            thr = np.where(no_pos, np.inf, thr)
        thr_info.update(values=[float(t) if np.isfinite(t) else None for t in thr],
                        val_f1=[_f(v) for v in f1],
                        defaulted=[int(k) for k in np.flatnonzero(no_pos)],
                        n_val_rows=int(len(vs)))
    else:
        thr = default if default is not None else None
        thr_info.update(values=None if thr is None else [float(t) for t in thr], val_f1=None,
                        defaulted=list(range(NUM_CLASSES)), n_val_rows=0)
    # decisions on test
    unit = "video" if cfg.decision_fusion == "none" else f"take_{cfg.decision_fusion}"
    ds, dy = _fuse(s, y, test["take_id"], cfg.decision_fusion)

    def decide(x):
        if thr is None:
            return zscore_predictions(x, cfg.clip_fallback_z)
        return M.apply_thresholds(x, thr)

    pred = decide(ds)
    res["decisions"] = {"unit": unit, unit: M.set_metrics(pred, dy)}
    if unit != "video":
        res["decisions"]["video"] = M.set_metrics(decide(s), y)
    res["thresholds"] = {k: v for k, v in thr_info.items() if k not in ("classes",)}
    return res, thr_info, pred, dy


# --- one run, all runs ----------------------------------------------------------------------

def _split_arrays(sets: dict[str, FeatureSet], split: str) -> tuple[dict[str, np.ndarray], dict]:
    ref = next(iter(sets.values()))
    mask = ref.split == split
    feats = {m: fs.features[mask] for m, fs in sets.items()}
    meta = {"labels": ref.labels[mask], "take_id": ref.take_id[mask], "view": ref.view[mask],
            "video_id": ref.video_id[mask]}
    return feats, meta


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
    if not len(test_meta["labels"]):
        raise EvalError(f"run {name}: no '{cfg.test_split}' rows in {list(files.values())[0]['path']}")
    test_scores = run.scores(test_x)
    val_scores = run.scores(val_x) if len(val_meta["labels"]) else {}
    if not len(val_meta["labels"]):
        warnings.append(f"no '{cfg.val_split}' rows: thresholds fall back to defaults")
    heads = [h for h in test_scores if test_scores[h] is not None]
    if not heads:
        raise EvalError(f"run {name}: Run.scores returned no score matrix")
    result: dict[str, Any] = {
        "run": name, "model": run.model_name, "run_dir": str(run_dir),
        "eval_config": to_dict(cfg), "code_version": code_version(),
        "feature_files": files, "warnings": warnings,
        "classes": list(CLASSES), "heads": {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    thresholds: dict[str, Any] = {"run": name, "model": run.model_name, "heads": {}}
    entries = []
    for head in heads:
        s = np.asarray(test_scores[head], dtype=np.float64)
        if s.shape != test_meta["labels"].shape:
            raise EvalError(f"run {name}: '{head}' scores {s.shape}, expected "
                            f"{test_meta['labels'].shape}")
        val = None
        if head in val_scores:
            val = dict(val_meta, scores=np.asarray(val_scores[head], dtype=np.float64))
        metrics, thr, pred, true = evaluate_head(head, dict(test_meta, scores=s), val, cfg)
        result["heads"][head] = metrics
        thresholds["heads"][head] = thr
        entries.append(Entry(name, run.model_name, head, metrics, s,
                             test_meta["labels"].astype(np.uint8), pred, true, list(warnings)))
    result["seconds"] = round(time.time() - t0, 3)
    _write_json(run_dir / "metrics.json", result)
    _write_json(run_dir / "thresholds.json", thresholds)
    log.info("%s: %s (%.1f s)", name, ", ".join(
        f"{h} mAP {100 * (result['heads'][h]['test']['video']['map']['value'] or 0):.1f}"
        for h in heads), result["seconds"])
    return result, entries


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
        write_report(entries, cfg.report_dir, notes=[f"run failed: {e}" for e in errors],
                     command=command)
    return entries, errors


def format_tables(entries: list[Entry]) -> str:
    """The comparison and decision tables as fixed-width text (what `make all` ends with)."""
    h, r = comparison_rows(entries)
    dh, dr = decision_rows(entries)
    return ("Composite-error test results (AP in %; fused = views of a take pooled)\n"
            + text_table(h, r) + "\nPredicted error sets (val thresholds, %)\n" + text_table(dh, dr))
