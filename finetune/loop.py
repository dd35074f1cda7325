"""The finetune loop: train, resume or skip one stream, then the next (``run_finetune``).

One stream is four steps, each a function below:

1. **build** (:func:`build_stream`): model, optimizer, data loaders;
2. **resume** (:func:`resume_stream`): continue after the saved epoch by the rule of
   :mod:`pipeline.runs`, or seed a fresh start;
3. **epoch** (:func:`train_epoch`, :func:`end_epoch`): SGD over the epoch's batches with the
   per-iteration schedule of :func:`lr_at`, validation when due, then ``metrics.jsonl``,
   TensorBoard and ``state.pt``;
4. **finish** (:func:`finish_stream`): the final confusion matrix and ``checkpoint.safetensors``.

Before the four, a stream whose checkpoint already has this call's fingerprint is skipped.
Shapes: B videos, T segments, C input channels (3 rgb, 10 flow), S crop size, K = 14 classes.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from finetune.config import FinetuneConfig, stream_config, stream_order
from finetune.data import ClipDataset, EpochSampler, FrameSource, single_class_records
from finetune.metrics import accuracy_metrics, confusion_matrix, plot_confusion
from finetune.model import SegmentClassifier, apply_bn_mode, to_input
from finetune.weights import (CHECKPOINT_NAME, FORMAT, STATE_NAME, init_source, init_weights,
                              load_state, read_checkpoint_meta, run_identity, save_checkpoint,
                              save_state, saved_state)
from pipeline.atomic import write_atomic
from pipeline.config import ConfigError, to_dict, to_json
from pipeline.runs import (METRICS_NAME, MetricsLog, fingerprint, open_tensorboard, read_state,
                           resume_after)
from pipeline.runtime import (Dist, describe, init_distributed, pick_device, resolve_cpu_amp,
                              resolve_threads)
from pipeline.taxonomy import CLASSES, NUM_CLASSES

log = logging.getLogger(__name__)


def lr_at(cfg: FinetuneConfig, progress: float) -> float:
    """Learning rate at ``progress`` epochs (fractional: epoch + step / steps_per_epoch).

    Warm-up: linear from 0.1 x lr to lr over ``warmup_epochs`` (mmaction2's LinearLR start).
    Then ``cosine``: lr * (1 + cos(pi * done)) / 2 over the remaining epochs, reaching 0 at the
    end; ``step``: lr * gamma ** (milestones passed); ``constant``: lr.
    """
    base = cfg.lr
    if cfg.warmup_epochs > 0 and progress < cfg.warmup_epochs:
        return base * (0.1 + 0.9 * progress / cfg.warmup_epochs)
    if cfg.lr_schedule == "cosine":
        span = cfg.epochs - cfg.warmup_epochs
        done = min(max((progress - cfg.warmup_epochs) / span, 0.0), 1.0)
        return base * 0.5 * (1.0 + math.cos(math.pi * done))
    if cfg.lr_schedule == "step":
        return base * cfg.gamma ** sum(progress >= m for m in cfg.milestones)
    return base


# --------------------------------------------------------------------------------------------
# The machine


@dataclass(frozen=True)
class Runtime:
    """The machine-dependent choices of one call, made once (pipeline.runtime)."""

    device: torch.device
    dist: Dist
    cpu_amp: bool  # the resolved [finetune] cpu_amp (fingerprinted: it changes the weights)
    amp_dtype: torch.dtype | None  # the autocast dtype on this device; None = fp32
    threads: int  # torch's intra-op threads

    def describe(self) -> dict[str, Any]:
        """For config.json and the checkpoint's metadata."""
        d = describe(self.device, self.amp_dtype is not None, self.threads)
        d["precision"] = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.amp_dtype,
                                                                            "fp32")
        return d


def setup_runtime(cfg: FinetuneConfig) -> Runtime:
    """Threads, device, process group and precision for this call; logged once."""
    if cfg.num_threads == 0:  # torch's own default, as before "auto" existed
        threads = torch.get_num_threads()
    else:
        # Beside this process run its decode workers and, under torchrun, the other ranks of
        # this machine with theirs.
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        threads = resolve_threads(cfg.num_threads,
                                  side_processes=local * cfg.workers + local - 1,
                                  where="[finetune] num_threads")
        torch.set_num_threads(threads)
    device = pick_device(cfg.device)
    dist_ = init_distributed(device)
    cpu_amp = resolve_cpu_amp(cfg.cpu_amp, "[finetune] cpu_amp")
    amp_dtype = None
    if device.type == "cuda":
        if cfg.amp:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif cpu_amp:
        amp_dtype = torch.bfloat16
    rt = Runtime(device, dist_, cpu_amp, amp_dtype, threads)
    if dist_.main:
        log.info("finetune runtime: %s", json.dumps(rt.describe(), sort_keys=True))
    return rt


# --------------------------------------------------------------------------------------------
# 1. Build


@dataclass
class StreamResult:
    modality: str
    checkpoint: Path
    status: str  # "trained" | "up to date" | "stopped"
    epochs_run: int = 0
    seconds: float = 0.0
    val: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclass
class Stream:
    """Everything one stream's epochs need, built once by :func:`build_stream`."""

    cfg: FinetuneConfig
    modality: str
    rt: Runtime
    out: Path
    identity: dict[str, Any]
    fingerprint: str
    init_desc: str
    inner: SegmentClassifier  # .model is the recognizer that is saved
    net: nn.Module  # inner, or inner wrapped in DistributedDataParallel
    params: list[nn.Parameter]
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    mean: Any
    std: Any
    channels_last: bool
    sampler: EpochSampler
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    counts: tuple[int, int]  # single-class (train, val) videos

    @property
    def steps(self) -> int:
        return len(self.train_loader)

    def autocast(self):
        dtype = self.rt.amp_dtype
        return torch.autocast(self.rt.device.type, dtype=dtype or torch.float32,
                              enabled=dtype is not None)


def _build_model(cfg: FinetuneConfig, modality: str, init_path: Path | None, rt: Runtime
                 ) -> tuple[SegmentClassifier, nn.Module, list[nn.Parameter]]:
    """(inner, net, trainable params): the recognizer from its start weights, on the device."""
    from extract.backbones import build_recognizer

    model = build_recognizer(cfg.backbone, modality, NUM_CLASSES, cfg.segments, cfg.seed)
    if cfg.dropout is not None:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = cfg.dropout
    if init_path is not None:
        init_weights(model, init_path, modality)
    model.to(rt.device)
    cuda = rt.device.type == "cuda"
    if cuda and modality != "skeleton":  # NHWC convs are faster on tensor cores; NCHW on CPU
        model.to(memory_format=torch.channels_last)
    inner = SegmentClassifier(model, cfg.segments)
    if rt.dist.world > 1 and cfg.sync_bn:
        if cuda:
            inner = nn.SyncBatchNorm.convert_sync_batchnorm(inner)
        else:
            log.warning("sync_bn needs CUDA; using per-process BatchNorm statistics")
    inner.train()
    # Before DDP and the optimizer: partial BN sets requires_grad, which both look at.
    apply_bn_mode(inner, cfg.bn)
    params = [p for p in inner.parameters() if p.requires_grad]
    net: nn.Module = inner
    if rt.dist.world > 1:
        net = nn.parallel.DistributedDataParallel(
            inner, device_ids=[rt.device.index] if cuda else None)
    return inner, net, params


def _build_loaders(cfg: FinetuneConfig, modality: str, train_recs: list, val_recs: list,
                   rt: Runtime) -> tuple[EpochSampler, Any, Any]:
    """(sampler, train loader, val loader); each process takes ``batch_size / world``."""
    from extract.decoders import init_decode_worker

    dist_ = rt.dist
    per_rank = cfg.batch_size // dist_.world
    workers = cfg.workers
    if modality == "skeleton":
        from finetune.skeleton import SkeletonClipDataset

        # Keypoints are read once into memory and a clip is a few numpy operations: worker
        # processes would cost more than they save.
        workers = 0
        train_ds = SkeletonClipDataset(train_recs, cfg, True)
        val_ds = SkeletonClipDataset(val_recs[dist_.rank::dist_.world], cfg, False)
    else:
        cache_dir = cfg.frame_cache_dir if cfg.cache == "disk" else None
        # Only training clips come from the cache: validation reads T x L frames per video a
        # few times, which costs less than caching every frame of it.
        train_ds = ClipDataset(train_recs, cfg, modality, True,
                               FrameSource(modality, cfg.short_side, cfg.decoder, cache_dir))
        val_ds = ClipDataset(val_recs[dist_.rank::dist_.world], cfg, modality, False,
                             FrameSource(modality, cfg.short_side, cfg.decoder, None))
    sampler = EpochSampler(len(train_ds), cfg.seed, dist_.rank, dist_.world)
    # Workers stay up between epochs; their seeds come from a private generator, so they never
    # consume the global torch RNG (dropout), which a resumed run restores from the state.
    loader_kw = dict(num_workers=workers, pin_memory=rt.device.type == "cuda",
                     worker_init_fn=(functools.partial(init_decode_worker, workers=workers)
                                     if workers else None),
                     persistent_workers=workers > 0,
                     generator=torch.Generator().manual_seed(cfg.seed))
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=per_rank, sampler=sampler,
                                               drop_last=True, **loader_kw)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=per_rank, shuffle=False,
                                             **loader_kw)
    return sampler, train_loader, val_loader


def build_stream(cfg: FinetuneConfig, modality: str, records: list, rt: Runtime,
                 init_path: Path | None, init_sha: str, identity: dict[str, Any]) -> Stream:
    """Check the split against the batch, then build model, optimizer and loaders."""
    from extract.backbones import get_spec

    train_recs = single_class_records(records, "train")
    val_recs = single_class_records(records, "val")
    if cfg.batch_size % rt.dist.world:
        raise ConfigError(f"[finetune] batch_size {cfg.batch_size} is not divisible by the "
                          f"{rt.dist.world} processes")
    if len(train_recs) < cfg.batch_size:
        raise ConfigError(f"[finetune] the train split has {len(train_recs)} single-class "
                          f"video(s), fewer than batch_size {cfg.batch_size}")
    out = cfg.run_dir(modality)
    if rt.dist.main:
        out.mkdir(parents=True, exist_ok=True)
    rt.dist.barrier()

    mean, std = get_spec(cfg.backbone).mean_std(modality)
    inner, net, params = _build_model(cfg, modality, init_path, rt)
    init_desc = "random" if init_path is None else f"{init_path} (sha256 {init_sha[:12]})"
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.amp_dtype == torch.float16)
    sampler, train_loader, val_loader = _build_loaders(cfg, modality, train_recs, val_recs, rt)
    return Stream(cfg, modality, rt, out, identity, fingerprint(identity), init_desc, inner, net,
                  params, opt, scaler, mean, std, rt.device.type == "cuda", sampler,
                  train_loader, val_loader, (len(train_recs), len(val_recs)))


# --------------------------------------------------------------------------------------------
# 2. Resume


def resume_stream(s: Stream) -> int:
    """Restore model, optimizer, scaler and RNG from ``state.pt`` when :func:`resume_after`
    says so; returns the epoch to continue after (0: a fresh, seeded start)."""
    cfg, device = s.cfg, s.rt.device
    state = read_state(cfg.resume, s.out / STATE_NAME, load_state)
    start = resume_after(cfg.resume, saved_state(state), s.identity, s.out, cfg.epochs)
    if start:
        s.inner.model.load_state_dict(state["model"])
        s.opt.load_state_dict(state["optimizer"])
        if "scaler" in state:
            s.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    else:
        torch.manual_seed(cfg.seed)  # dropout masks: a fresh run is repeatable
    return start


def start_logs(s: Stream, start: int, manifest_sha: str) -> tuple[MetricsLog | None, Any]:
    """Rank 0: ``config.json``, ``metrics.jsonl`` and TensorBoard for this call (the run
    convention of :mod:`pipeline.runs`); other ranks write nothing."""
    from pipeline.provenance import code_version

    if not s.rt.dist.main:
        return None, None
    cfg = s.cfg
    write_atomic(s.out / "config.json", json.dumps(
        {"config": to_dict(cfg), "modality": s.modality, "manifest_sha256": manifest_sha,
         "init": s.init_desc, "fingerprint": s.fingerprint, "runtime": s.rt.describe(),
         "code_version": code_version()}, indent=2, sort_keys=True, default=str) + "\n")
    metrics = MetricsLog(s.out / METRICS_NAME)
    metrics.start(start)
    writer = open_tensorboard(s.out, start * s.steps if start else None)
    log.info("finetune %s-%s: %d train / %d val single-class videos, %d step(s) of %d "
             "videos x %d process(es) per epoch, %s, init %s", cfg.backbone, s.modality,
             *s.counts, s.steps, cfg.batch_size // s.rt.dist.world, s.rt.dist.world,
             s.rt.device, s.init_desc)
    return metrics, writer


# --------------------------------------------------------------------------------------------
# 3. Epoch


def model_input(s: Stream, clips: torch.Tensor) -> torch.Tensor:
    """A batch from the loader, on the device, as the network takes it: frames (B, T, S, S, C)
    uint8 -> (B*T, C, S, S) normalised; skeleton clips (B, C, F, V) float32 are already
    normalised (finetune/skeleton.py)."""
    clips = clips.to(s.rt.device, non_blocking=True)
    if s.modality == "skeleton":
        return clips
    return to_input(clips, s.mean, s.std, s.channels_last)


def validate(s: Stream) -> tuple[np.ndarray, dict[str, float]]:
    """Confusion matrix and metrics over this rank's val shard, gathered from all ranks."""
    s.inner.eval()
    labels, preds = [], []
    with torch.inference_mode():
        for clips, y, _ in s.val_loader:
            x = model_input(s, clips)
            with s.autocast():
                scores = s.inner(x)
            preds.append(scores.float().argmax(1).cpu().numpy())
            labels.append(y.numpy())
    mine = (np.concatenate(labels) if labels else np.zeros(0, np.int64),
            np.concatenate(preds) if preds else np.zeros(0, np.int64))
    parts = s.rt.dist.gather(mine)
    cm = confusion_matrix(np.concatenate([p[0] for p in parts]),
                          np.concatenate([p[1] for p in parts]))
    return cm, accuracy_metrics(cm)


def train_epoch(s: Stream, epoch: int, writer) -> tuple[dict[str, Any], np.ndarray | None]:
    """One epoch of SGD, then validation when due: (metrics row, confusion matrix or None)."""
    from pipeline.log import progress

    cfg, device, steps = s.cfg, s.rt.device, s.steps
    t0 = time.time()
    s.sampler.set_epoch(epoch)
    s.net.train()
    apply_bn_mode(s.net, cfg.bn)
    loss_sum, correct, seen = 0.0, 0.0, 0.0
    batches = s.train_loader
    if s.rt.dist.main:
        batches = progress(batches, desc=f"finetune {s.modality} {epoch + 1}/{cfg.epochs}",
                           total=steps, unit="batch")
    lr = cfg.lr
    for i, (clips, y, _) in enumerate(batches):
        lr = lr_at(cfg, epoch + i / steps)
        for g in s.opt.param_groups:
            g["lr"] = lr
        x = model_input(s, clips)
        y = y.to(device, non_blocking=True)
        with s.autocast():
            scores = s.net(x)
        loss = nn.functional.cross_entropy(scores.float(), y)
        s.opt.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        if cfg.clip_grad > 0:
            s.scaler.unscale_(s.opt)
            nn.utils.clip_grad_norm_(s.params, cfg.clip_grad)
        s.scaler.step(s.opt)
        s.scaler.update()
        loss_sum += float(loss.detach()) * len(y)
        correct += float((scores.detach().argmax(1) == y).sum())
        seen += len(y)
        if writer is not None:
            writer.add_scalar("train/loss_step", float(loss.detach()), epoch * steps + i)
            writer.add_scalar("train/lr", lr, epoch * steps + i)
    loss_sum, correct, seen = s.rt.dist.sum([loss_sum, correct, seen], device)
    row: dict[str, Any] = {"epoch": epoch + 1, "step": (epoch + 1) * steps,
                           "train/loss": loss_sum / max(seen, 1),
                           "train/top1": correct / max(seen, 1), "train/lr": lr}
    cm = None
    if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
        cm, val = validate(s)
        row.update({f"val/{k}": v for k, v in val.items()})
    secs = time.time() - t0
    row["time_s"] = round(secs, 2)
    row["train/images_per_s"] = seen * cfg.segments / max(secs, 1e-9)
    return row, cm


def end_epoch(s: Stream, row: dict[str, Any], metrics: MetricsLog | None, writer) -> None:
    """Rank 0: the epoch's row to ``metrics.jsonl`` and TensorBoard, then ``state.pt``;
    every rank waits for it, so no rank runs ahead of a saved state."""
    if s.rt.dist.main:
        epoch = row["epoch"]
        metrics.append(row)  # before state.pt: a resumed run drops rows after its state
        for k, v in row.items():
            if "/" in k:
                writer.add_scalar(k, v, epoch * s.steps)
        writer.flush()
        shown = " ".join(f"{k} {v:.4g}" for k, v in row.items() if "/" in k)
        log.info("%s epoch %d/%d: %s (%.1f s)", s.modality, epoch, s.cfg.epochs, shown,
                 row["time_s"])
        device = s.rt.device
        save_state(s.out / STATE_NAME, {
            "fingerprint": s.fingerprint, "identity": json.dumps(s.identity, sort_keys=True),
            "epoch": epoch,
            "model": {k: v.detach().cpu() for k, v in s.inner.model.state_dict().items()},
            "optimizer": s.opt.state_dict(), "scaler": s.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None})
    s.rt.dist.barrier()


# --------------------------------------------------------------------------------------------
# 4. Finish


def finish_stream(s: Stream, writer, cm: np.ndarray | None, val: dict[str, float],
                  manifest_sha: str, init_sha: str) -> dict[str, float]:
    """Rank 0: the confusion matrix and the checkpoint (with its fingerprint, so a rerun of
    the same config skips the stream). Returns the val metrics."""
    from pipeline.provenance import code_version

    cfg = s.cfg
    if cm is None:  # resumed after the last epoch: evaluate what the state holds
        cm, val = validate(s)
    if s.rt.dist.main:
        writer.close()
        title = (f"{cfg.backbone}-{s.modality} val: top-1 {val['top1']:.3f}, mean class acc "
                 f"{val['mean_class_acc']:.3f} ({int(cm.sum())} videos)")
        plot_confusion(cm, s.out / "confusion.png", title)
        write_atomic(s.out / "confusion.json", json.dumps(
            {"classes": list(CLASSES), "rows": "true class", "columns": "predicted class",
             "matrix": cm.tolist(), **val}, indent=1) + "\n")
        ckpt = s.out / CHECKPOINT_NAME
        save_checkpoint(s.inner.model, ckpt, {
            "format": FORMAT, "backbone": cfg.backbone, "modality": s.modality,
            "segments": cfg.segments, "num_classes": NUM_CLASSES, "config": to_json(cfg),
            "manifest_sha256": manifest_sha, "init": s.init_desc, "init_sha256": init_sha,
            "fingerprint": s.fingerprint, "epochs": cfg.epochs, "code_version": code_version(),
            "runtime": json.dumps(s.rt.describe(), sort_keys=True),
            **{f"val_{k}": f"{v:.6f}" for k, v in val.items()}})
        log.info("wrote %s (val top-1 %.3f, mean class acc %.3f)", ckpt, val["top1"],
                 val["mean_class_acc"])
    s.rt.dist.barrier()
    return val


# --------------------------------------------------------------------------------------------
# One stream, every stream


def finetune_stream(cfg: FinetuneConfig, modality: str, records: list, manifest_sha: str,
                    rt: Runtime, stop_after_epoch: int | None = None) -> StreamResult:
    """Train (or resume, or skip when up to date) one stream; see the module docstring."""
    t_start = time.time()
    ckpt = cfg.run_dir(modality) / CHECKPOINT_NAME
    init_path, init_sha = init_source(cfg, modality)
    identity = run_identity(cfg, modality, manifest_sha, init_sha, rt.cpu_amp)
    meta = read_checkpoint_meta(ckpt)
    if meta.get("fingerprint") == fingerprint(identity):
        log.info("%s is up to date (same config, manifest and init); nothing to do", ckpt)
        return StreamResult(modality, ckpt, "up to date",
                            val={k[4:]: float(v) for k, v in meta.items() if k.startswith("val_")})

    s = build_stream(cfg, modality, records, rt, init_path, init_sha, identity)
    start = resume_stream(s)
    metrics, writer = start_logs(s, start, manifest_sha)
    cm, val = None, {}
    for epoch in range(start, cfg.epochs):
        row, epoch_cm = train_epoch(s, epoch, writer)
        if epoch_cm is not None:
            cm, val = epoch_cm, {k[4:]: v for k, v in row.items() if k.startswith("val/")}
        end_epoch(s, row, metrics, writer)
        if stop_after_epoch is not None and stop_after_epoch <= epoch + 1 < cfg.epochs:
            if writer is not None:
                writer.close()
            log.info("%s: stopped after epoch %d as asked; rerun to resume", s.out, epoch + 1)
            return StreamResult(modality, ckpt, "stopped", epoch + 1 - start,
                                time.time() - t_start, val)
    val = finish_stream(s, writer, cm, val, manifest_sha, init_sha)
    return StreamResult(modality, ckpt, "trained", cfg.epochs - start, time.time() - t_start,
                        val)


def run_finetune(cfg: FinetuneConfig, stop_after_epoch: int | None = None) -> list[StreamResult]:
    """Fine-tune every stream of ``cfg.modalities`` (RGB first, so ``flow_init = "rgb"`` finds
    it). Works alone or under ``torchrun`` (DistributedDataParallel)."""
    import torch.distributed as dist

    from pipeline.manifest import load_manifest, manifest_hash

    rt = setup_runtime(cfg)
    try:
        records = load_manifest(cfg.manifest)
        manifest_sha = manifest_hash(cfg.manifest)
        return [finetune_stream(stream_config(cfg, m), m, records, manifest_sha, rt,
                                stop_after_epoch) for m in stream_order(cfg)]
    finally:
        if rt.dist.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
