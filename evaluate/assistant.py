"""The assistant behind ``cprclip predict``: the 1-4 views of one take in, errors and advice out.

Steps for a take of V views (video files, in a manifest or not):

1. check that every video opens (an unreadable one is named in a one-line error);
2. extract features exactly as the run's training features were made, per modality, with
   :func:`extract.runner.features_for_videos` (same backbone, checkpoint, sampling and crops; flow
   is computed into a temporary folder with the recorded recipe when the run uses flow);
3. score the V views with the run (:meth:`train.runs.Run.scores`) -> (V, C) and fuse the views
   (mean, as ``cprclip eval`` does for its decisions) -> (C,);
4. decide: a class is detected when its fused score reaches its threshold. Thresholds come from
   ``runs/<name>/thresholds.json`` (chosen on val by ``cprclip eval``); without that file the
   fallback is 0.5 for BCE probabilities and, for prompt similarities (no fixed scale), the
   z-score rule of :func:`evaluate.runner.zscore_predictions`. A warning says so;
5. keep the detections possible together: at most one error per exclusive group (the one
   furthest above its threshold) and at most 4 errors;
6. report each error with its score and what to correct (:data:`pipeline.taxonomy.ADVICE`), or
   that the compressions look correct.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.taxonomy import ADVICE, CLASSES, CORRECT, EXCLUSIVE_GROUPS, MAX_COMPOSITE

log = logging.getLogger(__name__)

THRESHOLD_SOURCES = ("val", "fixed")
HEADS = ("auto", "clip", "bce")
DEFAULT_RUN = "cpr_clip_plus"  # the paper's best model


@dataclass(frozen=True)
class PredictConfig:
    """``[predict]`` section."""

    # where the runs are; also a [common] key
    runs_dir: str = "runs"
    # run folder (name under runs_dir, or a path); "" = runs/cpr_clip_plus when it exists, else
    # the run with the best val mAP in its metrics.json
    run: str = ""
    # which scores decide: clip (prompt similarity), bce (BCE head), or auto: the head with the
    # better val mAP in metrics.json (bce when the run was never evaluated and has one)
    head: str = "auto"
    # val: per-class thresholds chosen on val by `cprclip eval`; fixed: the fallback rule below
    threshold_source: str = "val"
    # fallback threshold for BCE probabilities
    bce_threshold: float = 0.5
    # fallback for similarities: predicted when >= this many std above the clip's mean score
    clip_z: float = 1.0
    # cpu by default: one take is a few seconds of work and needs no GPU
    device: str = "cpu"

    def validate(self) -> None:
        from pipeline.config import ConfigError

        if self.threshold_source not in THRESHOLD_SOURCES:
            raise ConfigError(f"[predict] threshold_source {self.threshold_source!r}: valid are "
                              f"{', '.join(THRESHOLD_SOURCES)}")
        if self.head not in HEADS:
            raise ConfigError(f"[predict] head {self.head!r}: valid are {', '.join(HEADS)}")


class PredictError(RuntimeError):
    """Input the assistant cannot use; a one-line message naming the file and the problem."""


@dataclass
class Detection:
    id: int
    name: str
    score: float
    threshold: float | None
    advice: str


@dataclass
class Prediction:
    """What the assistant found for one take. ``scores`` is the fused (C,) score per class name."""

    videos: list[str]
    views: list[int]
    run: str
    model: str
    head: str
    threshold_source: str
    errors: list[Detection]
    looks_correct: bool
    correct_detected: bool
    scores: dict[str, float]
    thresholds: dict[str, float | None] | None
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- choosing the run, head and thresholds --------------------------------------------------

def _metrics(run_dir: Path) -> dict | None:
    p = run_dir / "metrics.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _val_map(metrics: dict | None, head: str) -> float:
    try:
        v = metrics["heads"][head]["val"]["video"]["map"]["value"]
    except (KeyError, TypeError):
        return -1.0
    return -1.0 if v is None else float(v)


def resolve_run_dir(cfg: PredictConfig) -> Path:
    """The run folder to use (see :class:`PredictConfig`.run)."""
    root = Path(cfg.runs_dir)
    if cfg.run:
        p = Path(cfg.run)
        p = p if p.is_dir() else root / cfg.run
        if not (p / "checkpoint.safetensors").is_file():
            raise PredictError(f"run {cfg.run}: no checkpoint.safetensors in {p}")
        return p
    default = root / DEFAULT_RUN
    if (default / "checkpoint.safetensors").is_file():
        return default
    candidates = [d for d in sorted(root.glob("*/")) if (d / "checkpoint.safetensors").is_file()]
    if not candidates:
        raise PredictError(f"no trained run under {root}; run 'cprclip train' or pass --run")
    best = max(candidates, key=lambda d: max(_val_map(_metrics(d), h) for h in ("clip", "bce")))
    return best


def choose_head(run, metrics: dict | None, want: str) -> str:
    have = [h for h, ok in (("clip", run.has_clip), ("bce", run.has_bce)) if ok]
    if want != "auto":
        if want not in have:
            raise PredictError(f"run {run.name} has no '{want}' scores (it has: {', '.join(have)})")
        return want
    if metrics is not None and len(have) > 1:
        return max(have, key=lambda h: _val_map(metrics, h))
    return "bce" if "bce" in have else have[0]


def load_thresholds(run_dir: Path, head: str, cfg: PredictConfig) -> tuple[np.ndarray | None, str, list[str]]:
    """(thresholds (C,) or None for the z-score rule, source description, warnings)."""
    warnings: list[str] = []
    if cfg.threshold_source == "val":
        p = run_dir / "thresholds.json"
        try:
            data = json.loads(p.read_text())
            vals = data["heads"][head]["values"]
            if vals is None:
                raise KeyError("values")
            thr = np.array([np.inf if v is None else float(v) for v in vals], dtype=np.float64)
            if len(thr) != len(CLASSES):
                raise ValueError(f"{len(thr)} thresholds for {len(CLASSES)} classes")
            return thr, f"val ({p})", warnings
        except FileNotFoundError:
            warnings.append(f"{p} not found (run 'cprclip eval' to choose thresholds on val); "
                            "using the fixed fallback rule")
        except (KeyError, ValueError, TypeError) as e:
            warnings.append(f"{p}: no usable '{head}' thresholds ({e}); using the fixed fallback rule")
    if head == "bce":
        return np.full(len(CLASSES), cfg.bce_threshold), f"fixed ({cfg.bce_threshold} on probabilities)", warnings
    return None, f"fixed (z-score >= {cfg.clip_z} over the 14 similarities, top class always)", warnings


# --- the decision ---------------------------------------------------------------------------

def decide(scores: np.ndarray, thresholds: np.ndarray | None, clip_z: float = 1.0
           ) -> tuple[list[int], bool, list[dict[str, Any]]]:
    """Detected error ids (best first), whether "Correct" was detected, and what was dropped.

    ``scores`` (C,) fused over views. Margin = score - threshold (or the z-score under the
    threshold-free rule). Among detections, one error per exclusive group survives (the largest
    margin) and at most 4 errors (the largest margins), because no real take has more.
    """
    s = np.asarray(scores, dtype=np.float64)
    if thresholds is None:
        from evaluate.runner import zscore_predictions

        detected = zscore_predictions(s[None], clip_z)[0].astype(bool)
        margin = (s - s.mean()) / (s.std() + 1e-12)
    else:
        thr = np.asarray(thresholds, dtype=np.float64)
        detected = s >= thr
        margin = s - thr
    correct = bool(detected[CORRECT])
    errors = sorted((int(c) for c in np.flatnonzero(detected) if c != CORRECT),
                    key=lambda c: -margin[c])
    kept: list[int] = []
    dropped: list[dict[str, Any]] = []
    for c in errors:
        clash = next((k for k in kept for g in EXCLUSIVE_GROUPS.values() if c in g and k in g), None)
        if clash is not None:
            group = next(n for n, g in EXCLUSIVE_GROUPS.items() if c in g)
            dropped.append({"id": c, "name": CLASSES[c],
                            "reason": f"excludes {CLASSES[clash]} ({group}), which scored higher"})
        elif len(kept) >= MAX_COMPOSITE:
            dropped.append({"id": c, "name": CLASSES[c],
                            "reason": f"at most {MAX_COMPOSITE} errors occur together"})
        else:
            kept.append(c)
    return kept, correct, dropped


def predict_take(videos: list[str | Path], views: list[int] | None, cfg: PredictConfig) -> Prediction:
    """Run the assistant on the 1-4 views of one take (see the module docstring)."""
    from evaluate.runner import is_random_init

    videos = [Path(v) for v in videos]
    if not 1 <= len(videos) <= 4:
        raise PredictError(f"give the 1 to 4 views of one take, got {len(videos)} videos")
    views = list(views) if views else list(range(1, len(videos) + 1))
    if len(views) != len(videos):
        raise PredictError(f"--views has {len(views)} numbers for {len(videos)} videos")
    bad = [v for v in views if v not in (1, 2, 3, 4)]
    if bad or len(set(views)) != len(views):
        raise PredictError(f"--views {views}: each must be 1..4 and appear once")
    run_dir = resolve_run_dir(cfg)
    from train.runs import load_run

    try:
        run = load_run(run_dir)
    except Exception as e:  # noqa: BLE001 - the loader names its file
        raise PredictError(f"run {run_dir}: cannot load ({_first_line(e)})") from e
    metrics = _metrics(run_dir)
    head = choose_head(run, metrics, cfg.head)
    thresholds, source, warnings = load_thresholds(run_dir, head, cfg)
    attrs_by_mod = _feature_attrs(run)
    for m, attrs in attrs_by_mod.items():
        if is_random_init(attrs):
            warnings.append(f"run {run.name} was trained on {m} features from a RANDOMLY "
                            f"initialised backbone ({attrs.get('backbone', '?')}): its advice "
                            "is a demo, not a judgement of real CPR")
    for w in warnings:
        log.warning("%s", w)
    decoder = _decoder(attrs_by_mod)
    for v in videos:
        check_readable(v, decoder)

    from extract.decoders import DecodeError
    from extract.runner import ExtractError, VideoFailure, features_for_videos

    feats = {}
    for m, attrs in attrs_by_mod.items():
        log.info("extracting %s features of %d view(s) with %s", m, len(videos),
                 attrs.get("backbone", "?"))
        try:
            feats[m] = features_for_videos(videos, attrs, m, device=cfg.device)
        except (ExtractError, VideoFailure, DecodeError) as e:
            where = videos[0] if len(videos) == 1 else "the take"
            raise PredictError(f"{where}: {m} features failed ({_first_line(e)})") from e
    try:
        all_scores = run.scores(feats)
    except ValueError as e:  # features of another dimension than the checkpoint's
        raise PredictError(_first_line(e)) from None
    per_view = np.asarray(all_scores[head], dtype=np.float64)  # (V, C)
    fused = per_view.mean(axis=0)  # (C,): mean over views, as eval's decisions
    errors, correct, dropped = decide(fused, thresholds, cfg.clip_z)
    thr_map = None if thresholds is None else {
        CLASSES[c]: (None if not np.isfinite(t) else float(t)) for c, t in enumerate(thresholds)}
    dets = [Detection(c, CLASSES[c], float(fused[c]),
                      None if thresholds is None else float(thresholds[c]), ADVICE[c])
            for c in errors]
    return Prediction([str(v) for v in videos], views, run.name, run.model_name, head, source,
                      dets, looks_correct=not errors, correct_detected=correct,
                      scores={CLASSES[c]: float(fused[c]) for c in range(len(CLASSES))},
                      thresholds=thr_map, suppressed=dropped, warnings=warnings)


def _feature_attrs(run) -> dict[str, dict]:
    """The attributes of each training feature file; the run records them, and the file itself
    fills in what the record lacks (e.g. the extraction config)."""
    from pipeline.features import file_attrs

    out = {}
    for m, path in run.feature_files.items():
        attrs = dict(run.feature_attrs.get(m, {}))
        if "config_json" not in attrs and Path(path).is_file():
            attrs = {**file_attrs(path), **attrs}
        if "config_json" not in attrs:
            raise PredictError(f"run {run.name}: the {m} feature file {path} is gone and the run "
                               "does not record how its features were extracted")
        out[m] = attrs
    return out


def _decoder(attrs_by_mod: dict[str, dict]) -> str:
    for attrs in attrs_by_mod.values():
        try:
            return json.loads(attrs.get("config_json", "{}")).get("decoder", "auto")
        except ValueError:
            pass
    return "auto"


def check_readable(path: Path, decoder: str = "decord") -> None:
    """Raise PredictError naming ``path`` unless it opens as a video with frames."""
    from extract.decoders import open_video

    if not path.is_file():
        raise PredictError(f"{path}: no such file")
    try:
        with open_video(path, decoder) as r:
            n = r.num_frames
    except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
        raise PredictError(f"{path}: not a readable video ({_first_line(e)})") from None
    if n < 2:
        raise PredictError(f"{path}: not a readable video ({n} frame(s))")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --- output ---------------------------------------------------------------------------------

def format_text(p: Prediction) -> str:
    """What a trainee reads."""
    lines = []
    shown = ", ".join(f"{Path(v).name} (view {w})" for v, w in zip(p.videos, p.views))
    lines.append(f"Take: {shown}")
    head = {"clip": "prompt similarity", "bce": "BCE head"}.get(p.head, p.head)
    lines.append(f"Model: run {p.run} ({p.model}), scores: {head}, thresholds: {p.threshold_source}")
    lines.append("")
    if p.looks_correct:
        lines.append("No error detected: the compressions look correct.")
        if not p.correct_detected:
            lines.append("(The model is not confident about 'Correct' either; "
                         "consider another take or more views.)")
    else:
        lines.append(f"Detected {len(p.errors)} error(s), furthest above its threshold first:")
        for i, d in enumerate(p.errors, 1):
            lines.append(f"  {i}. {d.name} ({_confidence(p, d)}): {d.advice}.")
        advice = list(dict.fromkeys(d.advice for d in p.errors))
        lines.append("")
        lines.append("What to correct: " + "; ".join(advice) + ".")
    for s in p.suppressed:
        lines.append(f"  (not reported: {s['name']}, {s['reason']})")
    for w in p.warnings:
        lines.append(f"Warning: {w}")
    return "\n".join(lines) + "\n"


def _confidence(p: Prediction, d: Detection) -> str:
    if p.head == "bce":
        return f"confidence {100 * d.score:.0f}%"
    if d.threshold is None:
        return f"similarity {d.score:.3f}"
    return f"similarity {d.score:.3f}, threshold {d.threshold:.3f}"
