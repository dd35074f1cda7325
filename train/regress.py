"""``cprclip train task=regress target=rate|depth``: compression rate and depth from the
feature store, few-shot, the CardiacCLIP way (issue 19; docs/regress.md).

The features are the ones the composite-error models train on (``[train]``'s backbone,
segments and modalities unless ``[regress]`` says otherwise); the values come from the
manifest's ``rate`` and ``depth`` columns, joined on video_id. The head, the bins, the ordinal
loss and the few-shot sampling are in :mod:`train.regress_model`; this module reads the data,
embeds the bin prompts once (through the cache of :mod:`train.text`), fits, and writes the run.

A run folder ``runs/<run_name or regress_<target>>/`` holds ``config.json`` (resolved config,
head args, bins and their prompts, the text encoder, the features' and manifest's provenance,
the training video ids), ``regressor.safetensors`` (weights; not ``checkpoint*``, so the
composite-error evaluator and the assistant's run chooser never mistake it for theirs) and
``metrics.jsonl`` (losses every ``log_every`` steps). ``cprclip eval task=regress`` scores it
on the held-out participants (:mod:`evaluate.regress`). Training takes seconds, so a run is not
resumed: it is written in ``.<name>.new/`` and renamed into place when complete.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from pipeline.config import (ConfigError, check_dataset_name, check_fields, check_range,
                             check_seed, key_error, load_stage_config, to_dict)
from pipeline.guidelines import TARGETS
from train.regress_model import (CONTEXTS, METHODS, POOLINGS, RegressArgs, RegressHead,
                                 bin_centres, bin_index, bin_offset, check_edges,
                                 fewshot_indices, offset_loss, ordinal_loss,
                                 soft_ordinal_targets)

log = logging.getLogger(__name__)

WEIGHTS_NAME = "regressor.safetensors"

# Default bins per target: edges on the guideline limits, so that the probability of being
# inside the range is a sum of bins (rate 100-120 = two bins; depth 5-6 cm = one bin).
DEFAULT_EDGES: dict[str, tuple[float, ...]] = {
    "rate": tuple(float(v) for v in range(50, 131, 10)),  # 8 bins, 50..130 per minute
    "depth": tuple(float(v) for v in range(1, 12)),  # 10 bins, 1..11 cm
}
# Three wordings per bin; their embeddings are averaged (as CPR-CLIP averages its prompt kinds).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "rate": ("chest compressions at about {v} per minute",
             "a rescuer pressing on the chest about {v} times a minute",
             "CPR at a rate of about {v} compressions per minute"),
    "depth": ("chest compressions about {v} cm deep",
              "a rescuer pressing the chest down about {v} centimetres",
              "CPR with a compression depth of about {v} cm"),
}


@dataclass(frozen=True)
class RegressConfig:
    """``[regress]``: the regression task of the train and eval stages.

    Empty values (``""``, ``0``, ``[]``) of backbone, flow_backbone, segments, modalities and
    the text encoder keys mean "as ``[train]``", so the task reads the same feature files.
    """

    SECTION: ClassVar[str] = "regress"

    # [common]
    dataset: str = "synthetic"
    manifest: str = ""  # the rate/depth values come from its columns (required)
    features_dir: str = "features"
    runs_dir: str = "runs"
    seed: int = 0
    report_dir: str = ""  # `cprclip eval task=regress` writes regress.md there; "" = as [eval]

    task: Literal["regress"] = "regress"  # lets `cprclip train task=regress` name this section
    target: Literal["rate", "depth"] = "rate"
    run_name: str = ""  # "" = regress_<target>

    # features ("" / 0 / [] = as [train])
    backbone: str = ""
    flow_backbone: str = ""
    skeleton_backbone: str = ""
    segments: int = 0
    modalities: tuple[str, ...] = ()
    # multi-scale inputs (CardiacCLIP's EchoZoom): more feature folders holding the same files
    # made with other crops (`cprclip extract crop=... features_dir=...`); their features are
    # concatenated to the main ones per segment
    scale_features_dirs: tuple[str, ...] = ()

    # the head (train/regress_model.py)
    method: Literal["c2f", "plain"] = "c2f"  # coarse-to-fine with prompts, or plain MSE
    pooling: Literal["mean", "mfl"] = "mfl"  # over segments: mean, or MFL attention
    # the segments' T x T self-similarity per stream (RepNet): how the video repeats over time
    self_similarity: bool = True
    # the pooled features too; off by default: with 4 training people they let the head learn
    # who is pressing rather than how (docs/regress.md, the ablation), and then pooling is unused
    use_pooled: bool = False
    context: Literal["none", "shared", "per_bin"] = "none"  # CoOp-style learnt prompt context
    decode: Literal["soft", "hard"] = "soft"  # bin-probability-weighted value, or the top bin's
    bin_edges: tuple[float, ...] = ()  # evenly spaced; () = DEFAULT_EDGES[target]
    sharpness: float = 2.0  # SORD: how fast the soft ordinal target falls with bin distance
    offset_weight: float = 1.0  # weight of the in-bin offset loss against the ordinal loss
    hidden_dim: int = 256
    dropout: float = 0.3  # few videos: regularise
    logit_scale: float = 14.2857  # 1 / 0.07, CLIP's initial temperature (learnt)

    # few-shot: K training videos per bin (0 = every training video), drawn with seed
    shots: int = 0

    # optimisation: a fixed number of steps, so that 8 videos and 224 get the same schedule
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    log_every: int = 50

    # text ("" = as [train]); the prompts are embedded once, through the cache
    text_encoder: str = ""
    text_model: str = ""
    text_pretrained: str = ""
    text_cache_dir: str = ""

    # splits: training rows, and the held-out rows `cprclip eval task=regress` reports on
    train_split: str = "train"
    eval_splits: tuple[str, ...] = ("val", "test")
    # eval: run folders or names under runs_dir; () = every regression run there
    runs: tuple[str, ...] = ()

    # a head on a few hundred rows runs on the CPU (a GPU gains nothing), in one thread
    num_threads: int = 1

    def __post_init__(self) -> None:
        check_fields(self)
        check_seed(self)
        check_dataset_name(self)
        if self.bin_edges:
            try:
                check_edges(self.bin_edges)
            except ValueError as e:
                raise key_error(self, "bin_edges", str(e)) from None
        for k in ("steps", "batch_size", "hidden_dim", "log_every"):
            check_range(self, k, ge=1)
        for k in ("shots", "segments", "weight_decay", "offset_weight", "num_threads"):
            check_range(self, k, ge=0)
        check_range(self, "lr", gt=0)
        check_range(self, "sharpness", gt=0)
        check_range(self, "dropout", ge=0, lt=1)
        check_range(self, "logit_scale", gt=0, le=100)
        if self.run_name:
            from pipeline.paths import name_problem

            problem = name_problem(self.run_name)
            if problem:
                raise key_error(self, "run_name", f"{self.run_name!r} {problem}")

    @property
    def edges(self) -> np.ndarray:
        return check_edges(self.bin_edges or DEFAULT_EDGES[self.target])

    @property
    def run_dir(self) -> Path:
        from pipeline.paths import safe_child

        return safe_child(self.runs_dir, self.run_name or f"regress_{self.target}")

    @property
    def text_cache(self) -> str:
        return self.text_cache_dir or f"{self.runs_dir}/.text_cache"

    @property
    def backbones(self) -> dict[str, str]:
        """{modality: backbone of its feature file}, as the train stage reads them."""
        from extract.backbones import backbone_for

        return {m: backbone_for(self, m) for m in self.modalities}


# Keys a [regress] section leaves empty to follow [train].
FROM_TRAIN = ("backbone", "flow_backbone", "skeleton_backbone", "segments", "modalities",
              "text_encoder", "text_model", "text_pretrained", "text_cache_dir")


def load_config(config_path: str | Path | None, overrides: list[str] | dict) -> RegressConfig:
    """``[regress]`` (+ ``[common]``, + overrides), its empty feature and text keys filled from
    the file's ``[train]``."""
    from train.config import TrainConfig

    cfg = load_stage_config(RegressConfig, "regress", config_path, overrides)
    train = load_stage_config(TrainConfig, "train", config_path)
    fill = {k: getattr(train, k) for k in FROM_TRAIN if not getattr(cfg, k)}
    if "text_cache_dir" in fill and not fill["text_cache_dir"]:
        fill.pop("text_cache_dir")  # "" = <runs_dir>/.text_cache of the regression's runs_dir
    return replace(cfg, **fill)


# --- data -----------------------------------------------------------------------------------

@dataclass
class RegressRows:
    """Rows with a value. ``features`` (N, T, D) float32 (modalities, then scales, concatenated
    along D); ``y`` (N,) float64; the rest (N,) strings or ints, from the manifest."""

    video_id: np.ndarray
    take_id: np.ndarray
    view: np.ndarray
    participant: np.ndarray
    split: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    y: np.ndarray
    sources: list[dict[str, Any]] = field(default_factory=list)  # per feature file, in D order

    def __len__(self) -> int:
        return len(self.video_id)

    @property
    def blocks(self) -> tuple[int, ...]:
        """The D of each feature file, in the order of ``features``' last axis."""
        return tuple(int(s["dim"]) for s in self.sources)

    def select(self, mask: np.ndarray) -> "RegressRows":
        return RegressRows(self.video_id[mask], self.take_id[mask], self.view[mask],
                           self.participant[mask], self.split[mask], self.labels[mask],
                           self.features[mask], self.y[mask], self.sources)


def manifest_values(manifest: str | Path, target: str) -> dict[str, dict[str, Any]]:
    """{video_id: {take_id, value}} for the manifest rows; value None where the column is empty.
    A manifest without a single value names the column to fill."""
    from pipeline.manifest import load_manifest

    if not manifest:
        raise ValueError(f"task=regress needs a manifest with a '{target}' column (set manifest=)")
    if not Path(manifest).is_file():
        raise FileNotFoundError(f"{manifest}: manifest not found; task=regress reads the "
                                f"'{target}' values from it")
    records = load_manifest(manifest, check_files=False, allow_outside_root=True)
    out = {r.video_id: {"take_id": r.take_id, "value": getattr(r, target)} for r in records}
    if not any(v["value"] is not None for v in out.values()):
        raise ValueError(f"{manifest}: the '{target}' column is empty in every row; fill it "
                         f"({TARGETS[target].unit}, e.g. from a feedback manikin's log: README)")
    return out


def load_regress_rows(cfg: RegressConfig) -> RegressRows:
    """Every row of the feature files that the manifest gives a value, joined on video_id."""
    from train.data import load_rows

    if not cfg.modalities:
        raise ValueError("[regress] modalities is empty and [train] gives none")
    dirs = [cfg.features_dir, *cfg.scale_features_dirs]
    parts, sources = [], []
    base = None
    for d in dirs:
        rows, split, prov = load_rows(d, cfg.dataset, cfg.backbones, cfg.segments,
                                      tuple(cfg.modalities), cfg.manifest)
        index = {v: i for i, v in enumerate(rows.video_id.tolist())}
        if base is None:
            base = (rows, split)
            order = np.arange(len(rows))
        else:
            missing = [v for v in base[0].video_id.tolist() if v not in index]
            if missing:
                raise ValueError(f"features in {d} lack {len(missing)} video(s) of "
                                 f"{cfg.features_dir} (e.g. {missing[0]}); extract them there too")
            order = np.array([index[v] for v in base[0].video_id.tolist()], dtype=np.int64)
        parts.append(rows.features[order])
        for m in cfg.modalities:
            sources.append({"modality": m, "features_dir": str(d), "path": prov[m]["path"],
                            "sha256": prov[m]["sha256"], "attrs": prov[m]["attrs"],
                            "dim": int(rows.dims[list(cfg.modalities).index(m)])})
    rows, split = base
    values = manifest_values(cfg.manifest, cfg.target)
    vids = rows.video_id.tolist()
    y = np.array([np.nan if values.get(v, {}).get("value") is None else values[v]["value"]
                  for v in vids], dtype=np.float64)
    take = np.array([values.get(v, {}).get("take_id", v) for v in vids], dtype=object).astype(str)
    keep = np.isfinite(y)
    if not keep.all():
        log.warning("%d of %d feature rows have no %s in the manifest and are left out",
                    int((~keep).sum()), len(keep), cfg.target)
    feats = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    out = RegressRows(rows.video_id, take, rows.view, rows.participant, np.asarray(split),
                      rows.labels, feats, y, sources)
    return out.select(keep)


# --- prompts ----------------------------------------------------------------------------------

def bin_texts(target: str, edges: np.ndarray) -> list[tuple[str, ...]]:
    """The wordings of each bin's prompt, at its centre value."""
    out = []
    for c in bin_centres(edges):
        v = f"{c:.0f}" if target == "rate" else f"{c:g}"
        out.append(tuple(t.format(v=v) for t in TEMPLATES[target]))
    return out


def bin_label(target: str, lo: float, hi: float) -> str:
    """How the page names a bin: ``90-100 per minute``, ``4-5 cm``."""
    t = TARGETS[target]
    return f"{lo:g}\u2013{hi:g} {t.unit}"


def embed_bins(cfg: RegressConfig, edges: np.ndarray) -> tuple[np.ndarray, dict[str, Any], list]:
    """(K, E) unit prompt embeddings of the bins (mean of the wordings), the encoder's record,
    and the texts. Embedded once: the cache of train/text.py keeps them."""
    from train.text import build_text_encoder, encoder_id, prompt_embeddings

    enc = build_text_encoder(cfg.text_encoder, cfg.text_model, cfg.text_pretrained, cfg.seed,
                             "cpu")
    texts = bin_texts(cfg.target, edges)
    emb = prompt_embeddings(texts, "mean", enc, cfg.text_cache)
    info = {"id": encoder_id(enc), "name": enc.name, "weights_sha256": enc.weights_sha256,
            "random_init": bool(enc.random_init), "kind": cfg.text_encoder}
    return emb, info, texts


# --- fitting ----------------------------------------------------------------------------------

def head_args(cfg: RegressConfig, x_shape: tuple[int, ...], embed_dim: int,
              blocks: tuple[int, ...] = ()) -> RegressArgs:
    c2f = cfg.method == "c2f"
    return RegressArgs(dim=x_shape[-1], method=cfg.method, pooling=cfg.pooling,
                       hidden_dim=cfg.hidden_dim, dropout=cfg.dropout,
                       embed_dim=embed_dim if c2f else 0,
                       num_bins=len(cfg.edges) - 1 if c2f else 0,
                       context=cfg.context if c2f else "none", logit_scale=cfg.logit_scale,
                       self_similarity=cfg.self_similarity, blocks=tuple(blocks),
                       segments=x_shape[1], use_pooled=cfg.use_pooled)


def fit(cfg: RegressConfig, x: np.ndarray, y: np.ndarray, prompts: np.ndarray | None,
        on_log: Any = None, blocks: tuple[int, ...] = ()) -> RegressHead:
    """Train a head on ``x`` (N, T, D) and values ``y`` (N,); ``prompts`` (K, E) for c2f.

    Deterministic given ``cfg.seed``: the weights start from it, and step s draws its batch
    from ``rng([seed, s])``. ``on_log(step, {name: value})`` gets the mean losses every
    ``cfg.log_every`` steps and at the end. ``blocks``: the D of each feature file in ``x``
    (:attr:`RegressRows.blocks`), for the per-stream self-similarity.
    """
    if len(x) < 2:
        raise ValueError(f"{len(x)} training video(s) with a {cfg.target}: need at least 2")
    edges = cfg.edges
    torch.manual_seed(cfg.seed)
    model = RegressHead(head_args(cfg, x.shape, 0 if prompts is None else prompts.shape[1],
                                  blocks))
    model.set_stats(x, y)
    c2f = cfg.method == "c2f"
    if c2f:
        if prompts is None:
            raise ValueError("method c2f needs the bin prompt embeddings")
        model.set_bins(prompts, edges)
    xt = torch.from_numpy(np.asarray(x, np.float32))
    yt = torch.from_numpy(np.asarray(y, np.float32))
    sord = torch.from_numpy(soft_ordinal_targets(y, edges, cfg.sharpness).astype(np.float32))
    kt = torch.from_numpy(bin_index(y, edges))
    off = torch.from_numpy(bin_offset(y, edges).astype(np.float32))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    n, bs = len(x), min(cfg.batch_size, len(x))
    sums: dict[str, float] = {}
    count = 0
    model.train()
    for step in range(cfg.steps):
        # cosine learning rate over the steps, a pure function of the step
        lr = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.from_numpy(np.random.default_rng([cfg.seed, step]).permutation(n)[:bs])
        out = model(xt[idx])
        if c2f:
            lo = ordinal_loss(out["logits"], sord[idx])
            lf = offset_loss(out["offsets"], kt[idx], off[idx])
            loss = lo + cfg.offset_weight * lf
            parts = {"loss_ordinal": lo.item(), "loss_offset": lf.item()}
        else:
            loss = torch.nn.functional.mse_loss(out["z"], (yt[idx] - model.y_mean) / model.y_std)
            parts = {}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for k, v in {"loss": loss.item(), **parts}.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        if on_log is not None and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            on_log(step + 1, {k: v / count for k, v in sums.items()} | {"lr": lr})
            sums, count = {}, 0
    model.eval()
    return model


def training_rows(cfg: RegressConfig, rows: RegressRows) -> RegressRows:
    """The rows of ``train_split``, then ``shots`` per bin (seeded) when shots > 0."""
    train = rows.select(rows.split == cfg.train_split)
    if len(train) == 0:
        raise ValueError(f"no '{cfg.train_split}' rows with a {cfg.target} in the feature files")
    if cfg.shots > 0:
        train = train.select(fewshot_indices(train.y, cfg.edges, cfg.shots, cfg.seed))
    return train


# --- runs ---------------------------------------------------------------------------------------

def _write_json(path: Path, obj: Any) -> None:
    from pipeline.atomic import write_atomic

    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def train_regress(cfg: RegressConfig, config_path: str | None = None) -> dict[str, Any]:
    """Fit one regression head and write its run folder; returns a summary."""
    from pipeline.lock import release, take_lock
    from pipeline.provenance import code_version, sha256_file
    from pipeline.runs import METRICS_NAME, MetricsLog

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run_dir = cfg.run_dir
    lock = take_lock(run_dir.with_name(f".{run_dir.name}.lock"),
                     f"run {run_dir}: another 'cprclip train' (pid {{pid}}) is training it; "
                     "wait for it to finish, or set another run_name")
    try:
        t0 = time.perf_counter()
        rows = load_regress_rows(cfg)
        train = training_rows(cfg, rows)
        edges = cfg.edges
        prompts, text, texts = (embed_bins(cfg, edges) if cfg.method == "c2f"
                                else (None, None, None))
        counts = np.bincount(bin_index(train.y, edges), minlength=len(edges) - 1)
        log.info("regress %s (%s, %s pooling): %d training videos (%s per bin), D=%d",
                 cfg.target, cfg.method, cfg.pooling, len(train),
                 ", ".join(str(int(c)) for c in counts), train.features.shape[-1])
        new = run_dir.with_name(f".{run_dir.name}.new")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
        metrics = MetricsLog(new / METRICS_NAME)
        metrics.start(0)
        model = fit(cfg, train.features, train.y, prompts,
                    on_log=lambda step, row: metrics.append({"step": step, **{
                        f"train/{k}": v for k, v in row.items()}}), blocks=train.blocks)
        seconds = time.perf_counter() - t0
        from train import checkpoint as ckpt

        ckpt.save(new / WEIGHTS_NAME, ckpt.with_prefix(model.state_dict(), "model."),
                  {"regress_args": model.args.to_dict(), "target": cfg.target,
                   "edges": [float(e) for e in edges], "decode": cfg.decode})
        manifest = {"path": str(Path(cfg.manifest).resolve()), "sha256": sha256_file(cfg.manifest)}
        record = {
            "task": "regress", "target": cfg.target, "config": to_dict(cfg),
            "config_file": config_path, "regress_args": model.args.to_dict(),
            "bins": {"edges": [float(e) for e in edges],
                     "prompts": [list(t) for t in texts] if texts else None,
                     "train_counts": [int(c) for c in counts]},
            "text_encoder": text, "features": train.sources, "manifest": manifest,
            "data": {"train_videos": len(train), "shots": cfg.shots,
                     "train_video_ids": train.video_id.tolist()},
            "weights_sha256": sha256_file(new / WEIGHTS_NAME),
            "code_version": code_version(), "torch_version": torch.__version__,
            "train_seconds": round(seconds, 2), "finished": True,
        }
        _write_json(new / "config.json", record)
        old = run_dir.with_name(f".{run_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if run_dir.exists():
            os.rename(run_dir, old)
        os.rename(new, run_dir)
        shutil.rmtree(old, ignore_errors=True)
        log.info("regress %s: %d steps in %.1f s -> %s", cfg.target, cfg.steps, seconds, run_dir)
        return {"run_dir": str(run_dir), "target": cfg.target, "train_videos": len(train),
                "seconds": seconds}
    finally:
        release(lock)


@dataclass
class Regressor:
    """A finished regression run, ready to measure features (see :func:`load_regressor`)."""

    name: str
    path: Path
    target: str
    record: dict[str, Any]
    model: RegressHead
    edges: np.ndarray
    decode: str

    @property
    def sources(self) -> list[dict[str, Any]]:
        """Per feature file the run reads, in the order its features are concatenated:
        ``modality``, ``features_dir``, ``path``, ``sha256``, ``attrs`` (its recipe), ``dim``."""
        return list(self.record.get("features") or [])

    @property
    def bins(self) -> list[tuple[float, float]]:
        return [(float(a), float(b)) for a, b in zip(self.edges[:-1], self.edges[1:])]

    def predict(self, features: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """``features``: one (N, T, D_i) array per source, in :attr:`sources` order ->
        (N,) values and (N, K) bin probabilities (None for a plain head)."""
        x = np.concatenate([np.asarray(f, np.float32) for f in features], axis=-1)
        if x.shape[-1] != self.model.args.dim:
            raise ValueError(f"run {self.name}: features have D={x.shape[-1]}, the head was "
                             f"trained on D={self.model.args.dim}")
        return self.model.predict(torch.from_numpy(x), self.decode)


def is_regress_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / WEIGHTS_NAME).is_file()


def load_regressor(run_dir: str | Path) -> Regressor:
    """Load a regression run (config.json + regressor.safetensors; nothing is unpickled)."""
    from train import checkpoint as ckpt

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not (run_dir / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{run_dir}: not a regression run (no {WEIGHTS_NAME})")
    try:
        record = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{cfg_path}: unreadable ({e})") from None
    if record.get("task") != "regress":
        raise ValueError(f"{cfg_path}: not a regression run (task {record.get('task')!r})")
    tensors, meta = ckpt.load(run_dir / WEIGHTS_NAME)
    model = RegressHead(RegressArgs.from_dict(meta["regress_args"]))
    model.load_state_dict(ckpt.strip_prefix(tensors, "model."))
    model.eval()
    return Regressor(run_dir.name, run_dir, meta["target"], record, model,
                     np.asarray(meta["edges"], np.float64), meta.get("decode", "soft"))


def main(config_path: str | None, overrides: list[str]) -> int:
    """``cprclip train task=regress ...``: one run, one line on stdout."""
    import sys

    from pipeline.lock import LockHeld
    from pipeline.log import first_line

    cfg = load_config(config_path, overrides)
    try:
        r = train_regress(cfg, config_path)
    except (OSError, ValueError, KeyError, LockHeld) as e:
        log.error("train task=regress: %s", first_line(e))
        return 1
    sys.stdout.write(f"regress_{cfg.target}\t{r['run_dir']}\ttrain_videos={r['train_videos']}"
                     f"\t{r['seconds']:.1f}s\n")
    return 0


__all__ = ["RegressConfig", "Regressor", "load_config", "load_regressor", "train_regress", "fit",
           "is_regress_run", "METHODS", "POOLINGS", "CONTEXTS", "ConfigError"]
