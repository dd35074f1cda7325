"""The assistant: the 1-4 views of one take in, errors and advice out.

:class:`Assistant` loads a run once (its head, its thresholds and the backbone of every modality
it was trained on); :meth:`Assistant.analyse` then does, for a take of V views (video files, in
a manifest or not):

1. ``check``: every video opens (an unreadable one is named in a one-line error);
2. ``flow`` (runs trained on flow only): flow of each view with the recipe the run's flow
   features record (:func:`extract.flow.compute_flow_video`), into a scratch folder;
3. ``features``: (V, T, D) features per modality exactly as the run's training features were
   made: the same decoding, sampling and crops (:func:`extract.runner.video_views`) and the same
   backbone (:class:`extract.runner.FeatureModel`, its checkpoint checked against the recorded
   sha256 by :func:`extract.runner.recorded_checkpoint`, or re-created from the seed);
4. ``score``: the input check (:mod:`evaluate.ood`: is each view's video close enough to the
   training videos?), the run's scores (:meth:`train.runs.Run.scores`) -> (V, C), fused over
   the views (mean, as ``cprclip eval`` does) -> (C,), and the verdict of
   :func:`evaluate.decide.decide` -- the very function ``cprclip eval`` measures in its report;
   then, when regression runs are there (``[predict] measure_runs``), the take's compression
   rate and depth with the guideline and how sure (:mod:`assist.measure`; none if unsuitable).

The operating point (calibration, per-class marks, the "Correct" level) and the input check's
reference come from ``runs/<name>/thresholds.json`` and ``ood.npz``, written by ``cprclip eval``
and tied to the checkpoint's sha256: a file made for another checkpoint is refused. Without
the file the fallback is 0.5 on BCE probabilities or, for prompt similarities (no fixed scale),
the z-score rule of :func:`evaluate.decide.zscore_predictions`; both are uncalibrated, so the
take is then never declared correct ("not sure" instead), and a warning says so.

The verdict is ``errors`` (each with its calibrated probability and what to correct,
:data:`pipeline.taxonomy.ADVICE`), ``correct``, ``not_sure`` (with the closest candidates) or
``unsuitable`` (the video does not look like chest compressions: no error list).
``cprclip predict`` (:mod:`assist.cli`) and ``cprclip serve`` (:mod:`assist.server`) both go
through this class.
"""
from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from evaluate.decide import (SYNTHETIC_NOTE, OperatingPoint, StaleThresholds, ThresholdsError,
                             decide, fuse_checked_views, ood_from, operating_point_from,
                             read_thresholds, synthetic_sources)
from pipeline.config import check_device, check_fields, check_range
from pipeline.features import FeatureRecipe, FeatureStoreError, is_random_init, read_feature_recipe
from pipeline.log import first_line
from pipeline.manifest import VIEWS
from pipeline.provenance import sha256_file
from pipeline.taxonomy import ADVICE, CLASSES

log = logging.getLogger(__name__)

# Choice fields of [predict]
ThresholdSource = Literal["val", "fixed"]
Head = Literal["auto", "clip", "bce"]
THRESHOLD_SOURCES: tuple[str, ...] = get_args(ThresholdSource)
HEADS: tuple[str, ...] = get_args(Head)
DEFAULT_RUN = "cpr_clip_plus"  # the paper's best model


@dataclass(frozen=True)
class PredictConfig:
    """``[predict]`` section."""

    SECTION: ClassVar[str] = "predict"

    # where the runs are; also a [common] key
    runs_dir: str = "runs"
    # run folder (name under runs_dir, or a path); "" = runs/cpr_clip_plus when it exists, else
    # the run with the best val mAP in its metrics.json
    run: str = ""
    # which scores decide: clip (prompt similarity), bce (BCE head), or auto: the head with the
    # better val mAP in metrics.json (bce when the run was never evaluated and has one)
    head: Head = "auto"
    # val: per-class thresholds chosen on val by `cprclip eval`; fixed: the fallback rule below
    threshold_source: ThresholdSource = "val"
    # fallback threshold for BCE probabilities
    bce_threshold: float = 0.5
    # fallback for similarities: predicted when >= this many std above the clip's mean score
    clip_z: float = 1.0
    # cpu by default: one take is a few seconds of work and needs no GPU
    device: str = "cpu"
    # regression runs whose numbers the answer gives (rate, depth: issue 19, assist/measure.py);
    # names under runs_dir or folders; one that is not there is skipped, so no number is shown
    measure_runs: tuple[str, ...] = ("regress_rate", "regress_depth")
    # runs with a skeleton stream: each view's skeleton file, in the order of the videos; empty
    # = the dataset's own file beside each video, else the pose estimator (make pose-deps)
    skeletons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_fields(self)
        check_range(self, "bce_threshold", ge=0, le=1)  # a probability
        check_device(self)


class PredictError(RuntimeError):
    """Input the assistant cannot use; a one-line message naming the file and the problem.

    ``reason`` is the underlying cause alone (without the "which file, which modality" prefix
    of the message), for callers that name the file their own way, as the web server does.
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class UnreadableVideo(PredictError):
    """A file that does not open as a video with at least 2 frames."""


class UnusableVideo(PredictError):
    """A video that opens but that the run's extraction recipe cannot use (e.g. too few frames)."""


@dataclass
class Detection:
    """One error: ``score`` the fused raw score, ``threshold`` its mark on that raw scale (None
    under the z-score rule), ``probability`` the calibrated probability and ``mark`` the level
    it must reach (both None when the run is not calibrated)."""

    id: int
    name: str
    score: float
    threshold: float | None
    advice: str
    probability: float | None = None
    mark: float | None = None


# Prediction fields that are arrays for a caller in Python, not part of the JSON answer.
_NOT_JSON = ("per_view_scores", "frames")


@dataclass
class Prediction:
    """What the assistant found for one take. ``scores`` is the fused (C,) raw score per class
    name, ``thresholds`` the marks on that scale.

    ``verdict`` (:data:`evaluate.decide.VERDICTS`): ``errors``, ``correct``, ``not_sure`` or
    ``unsuitable``; ``reason``: why not sure / unsuitable, in words for people;
    ``probabilities`` and ``marks``: the calibrated probability and the level of each class
    (None when the run is not calibrated); ``candidates``: errors below their marks but closest
    to them; ``input_check``: per view, how far its video is from the training videos
    (``ratio``; unsuitable above ``limit``), None when the run has no check.
    ``looks_correct`` is ``verdict == "correct"``.

    ``per_view_scores`` (V, C) are the scores of each view before fusing; ``frames`` maps each
    view number to the (T, h, w, 3) uint8 RGB frames the model sampled from it (only when
    :meth:`Assistant.analyse` is asked to keep them). Neither is in :meth:`to_dict`.
    """

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
    verdict: str = ""
    reason: str = ""
    probabilities: dict[str, float] | None = None
    marks: dict[str, float | None] | None = None
    candidates: list[Detection] = field(default_factory=list)
    input_check: dict[str, Any] | None = None
    # measured numbers of the take (assist.measure.measure_dict): rate, depth; [] without runs
    measures: list[dict[str, Any]] = field(default_factory=list)
    # where each view's body keypoints came from (runs with a skeleton stream; [] otherwise)
    keypoints: list[str] = field(default_factory=list)
    per_view_scores: np.ndarray | None = field(default=None, repr=False)
    frames: dict[int, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.verdict:  # built by hand: say what the fields imply
            self.verdict = "errors" if self.errors else ("correct" if self.looks_correct
                                                         else "not_sure")

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer (``cprclip predict --json``; the web API adds its own keys)."""
        out = asdict(replace(self, per_view_scores=None, frames=None))
        for k in _NOT_JSON:
            del out[k]
        return out


# --- choosing the run, head and thresholds --------------------------------------------------

def _metrics(run_dir: Path) -> dict | None:
    """The run's metrics.json, or None: absent, unreadable, or made for another checkpoint than
    the run's current one (a retrained run: its figures say nothing about the new weights)."""
    p = run_dir / "metrics.json"
    try:
        metrics = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict):
        return None
    want = ((metrics.get("checkpoint") or {}).get("sha256")
            or (metrics.get("provenance") or {}).get("checkpoint_sha256"))
    ckpt = run_dir / "checkpoint.safetensors"
    if want and ckpt.is_file() and sha256_file(ckpt) != want:
        log.warning("%s was made for checkpoint sha256 %s, not the run's current one; ignoring it "
                    "(run 'cprclip eval' again)", p, want[:12])
        return None
    return metrics


def _val_map(metrics: dict | None, head: str) -> float:
    try:
        v = metrics["heads"][head]["val"]["video"]["map"]["value"]
    except (KeyError, TypeError):
        return -1.0
    return -1.0 if v is None else float(v)


def trained_runs(root: Path) -> list[str]:
    """The names of the folders under ``root`` that hold a trained run (a checkpoint)."""
    return sorted(d.name for d in root.glob("*/")  # hidden: train's work in progress
                  if not d.name.startswith(".") and (d / "checkpoint.safetensors").is_file())


def _runs_there(root: Path) -> str:
    """What a user may choose instead, for an error message."""
    if not root.is_dir():
        return f"runs_dir {root} does not exist (run 'cprclip train', or set runs_dir=)"
    names = trained_runs(root)
    if not names:
        return f"no trained run under {root} (run 'cprclip train')"
    return f"trained runs under {root}: {', '.join(names)}"


def resolve_run_dir(cfg: PredictConfig) -> Path:
    """The run folder to use (see :class:`PredictConfig`.run). A run is a folder as written
    (``runs/bce``, an absolute path) or else a name under ``runs_dir`` (``bce``)."""
    root = Path(cfg.runs_dir)
    if cfg.run:
        given = Path(cfg.run)
        places = [given] if given.is_absolute() else [given, root / given]
        found = ([d for d in places if (d / "checkpoint.safetensors").is_file()]
                 or [d for d in places if d.is_dir()])
        if not found:
            # name the run as the user wrote it, not joined to runs_dir (`runs/runs/nope`)
            raise PredictError(f"run {cfg.run} not found: neither a folder nor a run name "
                               f"under {root}; {_runs_there(root)}")
        p = found[0]
        if not (p / "checkpoint.safetensors").is_file():
            raise PredictError(f"run {cfg.run}: no checkpoint.safetensors in {p} (not trained, "
                               f"or its training did not finish); {_runs_there(root)}")
        return p
    default = root / DEFAULT_RUN
    if (default / "checkpoint.safetensors").is_file():
        return default
    candidates = [root / name for name in trained_runs(root)] if root.is_dir() else []
    if not candidates:
        raise PredictError(f"no trained run under {root}; run 'cprclip train', or choose a run "
                           "with run=NAME_OR_FOLDER")
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


def fallback_point(head: str, cfg: PredictConfig) -> OperatingPoint:
    """The operating point without eval: 0.5 on BCE probabilities, the z-score rule on
    similarities. Uncalibrated: a take is then never declared correct."""
    if head == "bce":
        return OperatingPoint(head, "fixed", np.full(len(CLASSES), cfg.bce_threshold))
    return OperatingPoint(head, "zscore", None, z=cfg.clip_z)


def _fallback_source(op: OperatingPoint, cfg: PredictConfig) -> str:
    if op.marks is None:
        return f"fixed (z-score >= {cfg.clip_z} over the 14 similarities, top class always)"
    return f"fixed ({cfg.bce_threshold} on probabilities)"


def load_operating_point(run_dir: Path, head: str, cfg: PredictConfig,
                         checkpoint_sha256: str | None):
    """``(operating point, source in words, input-check reference or None, warnings)``.

    Reads ``run_dir/thresholds.json`` (:func:`evaluate.decide.read_thresholds`). A file made for
    another checkpoint is refused with PredictError under ``threshold_source = "val"``; a
    missing or unusable one falls back to :func:`fallback_point` with a warning."""
    warnings: list[str] = []
    p = run_dir / "thresholds.json"
    record = None
    try:
        record = read_thresholds(run_dir, checkpoint_sha256)
    except FileNotFoundError:
        warnings.append(f"{p} not found (run 'cprclip eval' to calibrate the scores and choose "
                        "the marks on val); using the fixed fallback rule, and no check for "
                        "unsuitable video")
    except StaleThresholds as e:
        if cfg.threshold_source == "val":
            raise PredictError(f"{e} (or pass threshold_source=fixed)") from None
        warnings.append(f"{e}; using the fixed rule and no check for unsuitable video")
    except ThresholdsError as e:
        warnings.append(f"{e}; using the fixed fallback rule")
    ood = None
    if record is not None:
        try:
            ood = ood_from(record, run_dir)
        except ThresholdsError as e:
            warnings.append(f"{e}; no check for unsuitable video")
        if ood is None and not any("unsuitable" in w for w in warnings):
            warnings.append(f"{p} has no check for unsuitable video ('cprclip eval' found no "
                            "training videos to compare with, or is older than the check)")
    if cfg.threshold_source == "val" and record is not None:
        try:
            op = operating_point_from(record, head, p)
            if not op.calibrated:
                warnings.append(f"{p} holds uncalibrated thresholds (made by an older "
                                "'cprclip eval'; run it again for calibrated probabilities)")
            return op, f"val ({p}, rule {op.rule})", ood, warnings
        except ThresholdsError as e:
            warnings.append(f"{e}; using the fixed fallback rule")
    op = fallback_point(head, cfg)
    return op, _fallback_source(op, cfg), ood, warnings


def run_recipes(run) -> dict[str, FeatureRecipe]:
    """How each of the run's training feature files was made. The run records the recipe; the
    file itself fills in what an older record lacks (the extraction config)."""
    out = {}
    for m, path in run.feature_files.items():
        recorded = run.feature_attrs.get(m, {})
        try:
            recipe = FeatureRecipe.from_attrs(recorded)
        except FeatureStoreError:
            recipe = None
        if (recipe is None or not recipe.config) and Path(path).is_file():
            try:
                # the record wins where both say something: it is what the run was trained on
                recipe = FeatureRecipe.from_attrs({**read_feature_recipe(path).to_attrs(),
                                                   **recorded})
            except FeatureStoreError as e:
                raise PredictError(f"run {run.name}: {first_line(e)}") from None
        if recipe is None or not recipe.config:
            raise PredictError(f"run {run.name}: the {m} feature file {path} is gone and the run "
                               "does not record how its features were extracted")
        out[m] = recipe
    return out


def check_readable(path: Path, decoder: str = "decord") -> None:
    """Raise UnreadableVideo naming ``path`` unless it opens as a video with frames."""
    from extract.decoders import open_video

    path = Path(path)
    if not path.is_file():
        raise UnreadableVideo(f"{path}: no such file")
    try:
        with open_video(path, decoder) as r:
            n = r.num_frames
    except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
        raise UnreadableVideo(f"{path}: not a readable video ({first_line(e)})") from None
    if n < 2:
        raise UnreadableVideo(f"{path}: not a readable video ({n} frame(s))")


def check_take(videos: list[Path], views: list[int] | None) -> list[int]:
    """The view number of each video (default 1, 2, ...); PredictError unless it is one take."""
    if not 1 <= len(videos) <= len(VIEWS):
        raise PredictError(f"give the 1 to 4 views of one take, got {len(videos)} videos")
    views = list(views) if views else list(range(1, len(videos) + 1))
    if len(views) != len(videos):
        raise PredictError(f"--views has {len(views)} numbers for {len(videos)} videos")
    bad = [v for v in views if v not in VIEWS]
    if bad or len(set(views)) != len(views):
        raise PredictError(f"--views {views}: each must be 1..4 and appear once")
    return views


# --- the assistant --------------------------------------------------------------------------

# stage keys in the order analyse() enters them; "flow" only for runs trained on flow
STAGES = ("check", "flow", "features", "score")
OnStage = Callable[[str], None]


class Assistant:
    """A run ready to judge takes: loaded once by :meth:`load`, then :meth:`analyse` per take.

    Public attributes: ``config`` (:class:`PredictConfig`), ``run`` (:class:`train.runs.Run`),
    ``run_dir``, ``head`` (``clip`` or ``bce``), ``op`` (the
    :class:`evaluate.decide.OperatingPoint`), ``ood`` (the input check's
    :class:`evaluate.ood.OodReference`, or None), ``threshold_source`` (in words), ``recipes``
    ({modality: FeatureRecipe}), ``decoder`` and ``warnings`` (said once, at load).
    :meth:`analyse` only reads them, so several threads may analyse takes with one assistant.
    """

    def __init__(self, config: PredictConfig, run, run_dir: Path, head: str,
                 op: OperatingPoint, threshold_source: str,
                 recipes: dict[str, FeatureRecipe], extract_configs: dict, models: dict,
                 warnings: list[str], ood=None, measurers=None):
        self.config = config
        self.measurers = measurers  # assist.measure.Measurers (rate, depth runs), or None
        self.run = run
        self.run_dir = run_dir
        self.head = head
        self.op = op
        self.ood = ood
        self.threshold_source = threshold_source
        self.recipes = recipes
        self.warnings = warnings
        self._extract_configs = extract_configs  # {modality: ExtractConfig}
        self._models = models  # {modality: FeatureModel}, each loaded once
        self.decoder = next(iter(extract_configs.values())).decoder

    @property
    def thresholds(self) -> np.ndarray | None:
        """(C,) the marks on the raw score scale (None under the z-score rule)."""
        return self.op.raw_thresholds()

    @classmethod
    def load(cls, run: str | Path = "", config: PredictConfig | None = None,
             **settings: Any) -> "Assistant":
        """Load a run. ``run``: a run folder or a name under ``runs_dir`` ("" = the config's
        choice: runs/cpr_clip_plus when it exists, else the best run by val mAP). ``settings``
        override keys of ``config`` (``head="clip"``, ``device="cuda"``, ...).

        Raises PredictError with one line when the run, its thresholds or its backbones cannot
        be used.
        """
        from extract.backbones import WeightsError
        from extract.runner import ExtractError, FeatureModel, config_from_json, recorded_checkpoint
        from pipeline.config import build, to_dict
        from pipeline.runtime import pick_device
        from train.runs import load_run

        config = config or PredictConfig()
        if run or settings:
            values = {**to_dict(config), **settings, **({"run": str(run)} if run else {})}
            config = build(PredictConfig, values, "Assistant.load")
        run_dir = resolve_run_dir(config)
        try:
            loaded = load_run(run_dir)
        except Exception as e:  # noqa: BLE001 - the loader names its file
            raise PredictError(f"run {run_dir}: cannot load ({first_line(e)})") from e
        head = choose_head(loaded, _metrics(run_dir), config.head)
        ckpt = run_dir / "checkpoint.safetensors"
        op, source, ood, warnings = load_operating_point(
            run_dir, head, config, sha256_file(ckpt) if ckpt.is_file() else None)
        recipes = run_recipes(loaded)
        for m, recipe in recipes.items():
            if is_random_init(recipe):
                warnings.append(f"run {loaded.name} was trained on {m} features from a RANDOMLY "
                                f"initialised backbone ({recipe.backbone}): its advice "
                                "is a demo, not a judgement of real CPR")
        if synthetic_sources(recipes):
            warnings.append(SYNTHETIC_NOTE)
        if ood is not None and set(ood.modalities) != set(recipes):
            warnings.append(f"the input check covers {', '.join(ood.modalities)}, the run uses "
                            f"{', '.join(recipes)}; no check for unsuitable video")
            ood = None
        if "flow" in recipes and not _flow_settings(recipes["flow"]):
            raise PredictError(f"run {loaded.name}: its flow features record no flow recipe, so "
                               "the flow of a new video cannot be made the same way")
        for w in warnings:
            log.warning("%s", w)
        device = pick_device(config.device)
        extract_configs, models = {}, {}
        for m, recipe in recipes.items():
            extract_configs[m] = config_from_json(recipe.config_json)
            try:
                models[m] = FeatureModel(extract_configs[m], m, recorded_checkpoint(recipe), device)
            except (ExtractError, WeightsError) as e:
                raise PredictError(f"run {loaded.name}: the {m} backbone cannot be re-made "
                                   f"({first_line(e)})", first_line(e)) from e
        from assist.measure import Measurers

        # measure runs named without a folder are looked up beside the error run (where
        # `cprclip train` puts both), not in the working directory's runs_dir
        measurers = Measurers.load(config.measure_runs, run_dir.parent, recipes, device,
                                   warnings)
        log.info("loaded run %s (%s), head %s, thresholds %s, modalities %s", loaded.name,
                 loaded.model_name, head, source, ", ".join(recipes))
        return cls(config, loaded, run_dir, head, op, source, recipes, extract_configs,
                   models, warnings, ood, measurers)

    @property
    def stages(self) -> list[str]:
        """The stage keys :meth:`analyse` reports to ``on_stage``, in order."""
        return [s for s in STAGES if s != "flow" or "flow" in self.recipes]

    def check_video(self, path: str | Path) -> None:
        """Raise UnreadableVideo unless ``path`` opens as a video with frames."""
        check_readable(Path(path), self.decoder)

    def analyse(self, videos: list[str | Path], views: list[int] | None = None,
                on_stage: OnStage | None = None, *, scratch: str | Path | None = None,
                keep_frames: bool = False,
                skeletons: list[str | Path | None] | None = None) -> Prediction:
        """Judge the 1-4 views of one take (see the module docstring).

        ``views``: the view number (1-4) of each video, default 1, 2, ... ``on_stage(key)`` is
        called on entering each stage of :attr:`stages`. Flow videos are written to
        ``scratch`` (as ``view<N>.flow.mp4``), by default a temporary folder removed after.
        ``keep_frames``: fill ``Prediction.frames`` with the sampled RGB frames of each view.
        ``skeletons``: for a run with a skeleton stream, each view's skeleton file (None: the
        dataset's own file beside the video, ``<video folder>/../skeleton/<stem>.npz``, else
        the pose estimator of ``make pose-deps``; :meth:`_skeleton_files`).
        Raises PredictError (UnreadableVideo, UnusableVideo) with one line.
        """
        videos = [Path(v) for v in videos]
        views = check_take(videos, views)
        stage = on_stage or (lambda key: None)
        stage("check")
        for v in videos:
            self.check_video(v)
        if skeletons is not None and len(skeletons) != len(videos):
            raise PredictError(f"{len(videos)} videos but {len(skeletons)} skeleton files")
        sk = [None if p is None or str(p) == "" else Path(p) for p in (skeletons or [])]
        sk = sk or [None] * len(videos)
        if scratch is not None:
            return self._analyse(videos, views, stage, Path(scratch), keep_frames, sk)
        with tempfile.TemporaryDirectory(prefix="cprclip-predict-") as tmp:
            return self._analyse(videos, views, stage, Path(tmp), keep_frames, sk)

    def _skeleton_files(self, videos: list[Path], views: list[int], given: list[Path | None],
                        scratch: Path) -> tuple[list[Path], list[str]]:
        """Each view's skeleton file, and a note per view saying where it came from: the file
        given, the dataset's own (``<video folder>/../skeleton/<stem>.npz``, as ``cprclip
        synth`` and the AlphaPose import lay them out), or MediaPipe BlazePose run now (needs
        ``make pose-deps``). A view where the estimator finds nobody in most frames gets a note
        that says so. Raises PredictError with one line when none of these works."""
        from extract.pose import PoseError, PoseEstimator, PoseVideoError, detected_fraction
        from pipeline.skeleton import write_skeleton

        files: list[Path] = []
        notes: list[str] = []
        estimator = None
        try:
            for v, w, g in zip(videos, views, given):
                own = v.parent.parent / "skeleton" / f"{v.stem}.npz"
                if g is not None:
                    if not g.is_file():
                        raise PredictError(f"{g}: skeleton file of view {w} not found")
                    files.append(g)
                    notes.append(f"view {w}: keypoints from the file given ({g.name})")
                elif own.is_file():
                    files.append(own)
                    notes.append(f"view {w}: keypoints from the dataset's file {own}")
                else:
                    if estimator is None:
                        estimator = PoseEstimator(hands=False, max_side=1280)
                    try:
                        skel, _ = estimator.estimate(v, scratch / f"view{w}.pose.raw")
                    except (PoseError, PoseVideoError) as e:
                        raise PredictError(
                            f"{v}: the run needs the body keypoints of view {w}: give its "
                            f"skeleton file (skeletons=...) or set up the pose estimator "
                            f"({first_line(e)})", first_line(e)) from e
                    out = write_skeleton(scratch / f"view{w}.skeleton.npz", skel)
                    files.append(out)
                    found = detected_fraction(skel)
                    notes.append(f"view {w}: keypoints from the pose estimator (MediaPipe "
                                 f"BlazePose), a person found in {100 * found:.0f} % of frames")
                    if found < 0.5:
                        notes.append(f"The pose estimator found no person in most frames of "
                                     f"camera {w}: the posture scores of that view mean little.")
        finally:
            if estimator is not None:
                estimator.close()
        return files, notes

    def _analyse(self, videos: list[Path], views: list[int], stage: OnStage, scratch: Path,
                 keep_frames: bool, skeletons: list[Path | None]) -> Prediction:
        import torch

        from extract.decoders import DecodeError
        from extract.runner import ExtractError, VideoFailure, video_views

        where = videos[0] if len(videos) == 1 else "the take"
        flows: list[Path | None] = [None] * len(videos)
        if "flow" in self.recipes:
            stage("flow")
            from extract.flow import compute_flow_video

            rec = _flow_settings(self.recipes["flow"])
            for i, v in enumerate(videos):
                flows[i] = scratch / f"view{views[i]}.flow.mp4"
                try:
                    compute_flow_video(v, flows[i], rec["method"], int(rec["short_side"]) or None,
                                       float(rec["bound"]))
                except (DecodeError, ExtractError) as e:
                    raise PredictError(f"{where}: flow features failed ({first_line(e)})",
                                       first_line(e)) from e
        stage("features")
        feats: dict[str, np.ndarray] = {}
        frames: dict[int, np.ndarray] = {}
        skeleton_notes: list[str] = []
        if "skeleton" in self.recipes:
            from extract.runner import skeleton_view

            files, skeleton_notes = self._skeleton_files(videos, views, skeletons, scratch)
            for n in skeleton_notes:
                log.info("%s", n)
            try:
                inputs = [skeleton_view(self._extract_configs["skeleton"], f) for f in files]
            except VideoFailure as e:
                raise UnusableVideo(f"{where}: skeleton features failed ({first_line(e)})",
                                    str(e)) from e
            feats["skeleton"] = self._models["skeleton"](inputs)  # (V, T, D)
        for m, model in self._models.items():
            if m == "skeleton":
                continue
            log.info("extracting %s features of %d view(s) with %s", m, len(videos),
                     self.recipes[m].backbone)
            rows = []
            for i, v in enumerate(videos):
                try:
                    vv = video_views(self._extract_configs[m], m, v, flows[i])  # (K, T, h, w, C)
                except VideoFailure as e:
                    raise UnusableVideo(f"{where}: {m} features failed ({first_line(e)})",
                                        str(e)) from e
                if keep_frames and m == "rgb":
                    frames[views[i]] = vv[0]  # the first crop's (T, h, w, 3): what the model saw
                rows.append(model(torch.from_numpy(vv[None]))[0])  # (T, D)
            feats[m] = np.stack(rows)  # (V, T, D)
        if keep_frames and not frames:  # a flow-only run: show the sampled RGB frames anyway
            frames = {w: self._sampled_rgb(v) for v, w in zip(videos, views)}
        stage("score")
        try:
            feats = self.run.prepare(feats, views)  # streams standardised per camera view
            all_scores = self.run.scores(feats)
        except ValueError as e:  # features of another dimension than the checkpoint's
            raise PredictError(first_line(e)) from None
        per_view = np.asarray(all_scores[self.head], dtype=np.float64)  # (V, C)
        check, bad = self._input_check(feats, views)
        # (C,): mean over the views, as eval's decisions; a view that fails the input check is
        # left out (all of them: the verdict is "unsuitable" and the scores are only shown)
        fused = fuse_checked_views(per_view, bad)
        unsuitable = bad is not None and bool(bad.all())
        d = decide(fused, self.op, unsuitable, check["reason"] if unsuitable else "")
        thr = self.op.raw_thresholds()
        probs = d.probabilities
        marks = self.op.marks if self.op.calibrated else None
        measures: list[dict[str, Any]] = []
        warnings = list(self.warnings) + [n for n in skeleton_notes if n.startswith("The pose")]
        if self.measurers is not None and d.verdict != "unsuitable":  # no numbers for non-CPR
            try:
                measures = self.measurers.measure(videos, views, feats, self.recipes, flows,
                                                  scratch)
            except Exception as e:  # noqa: BLE001 - the numbers are extra: keep the verdict
                log.warning("rate/depth not measured: %s", first_line(e))
                warnings.append(f"rate and depth could not be measured ({first_line(e)})")

        def detection(c: int) -> Detection:
            return Detection(c, CLASSES[c], float(fused[c]),
                             None if thr is None or not np.isfinite(thr[c]) else float(thr[c]),
                             ADVICE[c], None if probs is None else float(probs[c]),
                             None if marks is None or not np.isfinite(marks[c]) else float(marks[c]))

        return Prediction(
            [str(v) for v in videos], views, self.run.name, self.run.model_name, self.head,
            self.threshold_source, [detection(c) for c in d.errors],
            looks_correct=d.verdict == "correct", correct_detected=d.correct_detected,
            scores={CLASSES[c]: float(fused[c]) for c in range(len(CLASSES))},
            thresholds=None if thr is None else {
                CLASSES[c]: (float(t) if np.isfinite(t) else None) for c, t in enumerate(thr)},
            suppressed=d.dropped, warnings=warnings, verdict=d.verdict,
            reason=d.reason,
            probabilities=None if probs is None else {
                CLASSES[c]: float(probs[c]) for c in range(len(CLASSES))},
            marks=None if marks is None else {
                CLASSES[c]: (float(m) if np.isfinite(m) else None) for c, m in enumerate(marks)},
            candidates=[detection(c) for c in d.candidates], input_check=check,
            measures=measures, keypoints=skeleton_notes, per_view_scores=per_view, frames=frames if keep_frames else None)

    def _input_check(self, feats: dict[str, np.ndarray], views: list[int]
                     ) -> tuple[dict[str, Any] | None, np.ndarray | None]:
        """The input check of each view: (figures for the answer, (V,) bool unsuitable), or
        (None, None) when the run has no check. The figures hold each view's ``ratio`` (its
        distance from the training videos over the limit), the ``limit`` above which a view
        is unsuitable, the ``unsuitable_views`` and, in words, ``reason`` (every view
        unsuitable) or ``note`` (some views left out)."""
        if self.ood is None:
            return None, None
        ratios = self.ood.ratios(feats)  # (V,)
        bad = self.ood.unsuitable(ratios)
        cams = [w for w, b in zip(views, bad) if b]
        known = "look like the chest-compression videos the model learned from"
        check: dict[str, Any] = {"limit": self.ood.slack,
                                 "ratio": {str(w): float(r) for w, r in zip(views, ratios)},
                                 "unsuitable_views": cams, "reason": "", "note": ""}
        if len(views) == 1 and cams:
            check["reason"] = f"the video does not {known}"
        elif cams and len(cams) == len(views):
            check["reason"] = f"none of the videos {known}s"
        elif cams:
            which = ("camera " + str(cams[0]) if len(cams) == 1 else
                     "cameras " + ", ".join(str(w) for w in cams[:-1]) + f" and {cams[-1]}")
            check["note"] = (f"The video of {which} was left out: it does not {known}. The "
                             "verdict rests on the other views.")
        return check, bad

    def _sampled_rgb(self, video: Path) -> np.ndarray:
        """(T, H, W, 3) uint8: the frames at the T segment centres of ``video``, uncropped."""
        from extract.decoders import open_video, read_frames
        from extract.sampling import segment_indices

        T = next(iter(self._extract_configs.values())).segments
        with open_video(video, self.decoder) as r:
            n = r.num_frames
        return read_frames(video, segment_indices(n, T, 1).reshape(-1), self.decoder)


def _flow_settings(recipe: FeatureRecipe) -> dict[str, str]:
    """{method, bound, short_side} of a flow feature file's recorded flow recipe ({} if none)."""
    from extract.flow import parse_recipe

    return parse_recipe(recipe.flow_recipe)


# --- output ---------------------------------------------------------------------------------

def format_text(p: Prediction) -> str:
    """What a trainee reads: the verdict first, then the errors or the closest candidates."""
    lines = []
    shown = ", ".join(f"{Path(v).name} (view {w})" for v, w in zip(p.videos, p.views))
    lines.append(f"Take: {shown}")
    head = {"clip": "prompt similarity", "bce": "BCE head"}.get(p.head, p.head)
    lines.append(f"Model: run {p.run} ({p.model}), scores: {head}, thresholds: {p.threshold_source}")
    if p.keypoints:
        lines.append("Body keypoints: " + "; ".join(n for n in p.keypoints
                                                   if n.startswith("view ")))
    lines.append("")
    if p.input_check and p.input_check.get("note"):
        lines.append(p.input_check["note"])
    if p.verdict == "unsuitable":
        lines.append(f"Unsuitable video: {p.reason}.")
        lines.append("No errors are listed: the assistant only judges videos of chest "
                     "compressions like the ones it learned from.")
    elif p.verdict == "correct":
        sure = "" if p.probabilities is None else \
            f" ({100 * p.probabilities[CLASSES[0]]:.0f}% likely)"
        lines.append(f"No error detected: the compressions look correct{sure}.")
    elif p.verdict == "not_sure":
        lines.append(f"Not sure: {p.reason}.")
        if p.candidates:
            lines.append("Closest candidates (below the level at which they are reported):")
            for d in p.candidates:
                lines.append(f"  - {d.name} ({_confidence(p, d)}): {d.advice}.")
    else:
        lines.append(f"Detected {len(p.errors)} error(s), furthest above its mark first:")
        for i, d in enumerate(p.errors, 1):
            lines.append(f"  {i}. {d.name} ({_confidence(p, d)}): {d.advice}.")
        advice = list(dict.fromkeys(d.advice for d in p.errors))
        lines.append("")
        lines.append("What to correct: " + "; ".join(advice) + ".")
        if p.candidates:
            lines.append("Close to their mark, not reported: " + ", ".join(
                f"{d.name} ({_confidence(p, d)})" for d in p.candidates) + ".")
    for s in p.suppressed:
        lines.append(f"  (not reported: {s['name']}, {s['reason']})")
    if p.measures:
        from assist.measure import format_measure

        lines.append("")
        lines.extend(format_measure(m) for m in p.measures)
    for w in p.warnings:
        lines.append(f"Warning: {w}")
    return "\n".join(lines) + "\n"


def _confidence(p: Prediction, d: Detection) -> str:
    """The calibrated probability where there is one; else the raw score, named as such."""
    if d.probability is not None:
        mark = "" if d.mark is None else f", reported from {100 * d.mark:.0f}%"
        return f"{100 * d.probability:.0f}% likely{mark}"
    if p.head == "bce":
        return f"uncalibrated score {100 * d.score:.0f}%"
    if d.threshold is None:
        return f"similarity {d.score:.3f}"
    return f"similarity {d.score:.3f}, threshold {d.threshold:.3f}"
