"""``cprclip train task=frames``: frame-level visual-text classification, one run per loss.

``train_frames(cfg)`` reads the frame dataset (frames/layout.py), embeds the C class captions
once with the frozen text encoder (train/text.py, cached on disk), runs every image through the
backbone's frozen blocks once (frames/model.py), then trains one model per loss in
``cfg.losses`` into ``<runs_dir>/<run_prefix>_<loss>/``:

- ``best.safetensors``: the weights of the epoch with the best val top-1 (ties: top-5), and the
  caption embeddings; written whenever val improves. Named ``best``, not ``checkpoint``, so the
  composite-error stages (``cprclip eval``, ``predict``), which take every run folder with a
  ``checkpoint*.safetensors``, pass these runs by;
- ``last.safetensors``: the resume state (weights, AdamW state, epoch, best so far);
- ``config.json``: ``"task": "frames"``, the resolved config, model args, classes and captions,
  the dataset's metadata sha256, text encoder, backbone weights sha256, the best epoch with its
  val metrics, test metrics of the best weights (when the dataset has a test split);
- ``metrics.jsonl`` and ``tensorboard/``: the run convention of pipeline/runs.py, as is
  ``resume``.

Val metrics (the held-out participants): ``val/top1`` and ``val/top5`` per frame, and
``val/video_top1`` / ``val/video_top5`` with each video's frames' softmax probabilities
averaged.

Determinism: the projection is initialised from ``seed``; epoch e shuffles with
``rng([seed, e])`` and seeds dropout with ``f(seed, e)``; the learning rate is a pure function of
the position in training. A run resumed from ``last.safetensors`` ends with the weights of an
uninterrupted one.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from frames.config import FramesConfig
from frames.layout import FrameDataset, FrameRow, METADATA, load_frame_dataset
from frames.losses import clip_loss, topk_correct
from frames.model import FrameClip, FrameModelArgs, build_model, prepare, read_image, to_input
from pipeline.config import to_dict
from pipeline.lock import release, take_lock
from pipeline.log import progress
from pipeline.paths import safe_child
from pipeline.provenance import code_version, sha256_file
from pipeline.runs import (METRICS_NAME, MetricsLog, SavedState, fingerprint, open_tensorboard,
                           read_state, resume_after)
from pipeline.runtime import describe, pick_device, resolve_threads
from train import checkpoint as ckpt

log = logging.getLogger(__name__)

BEST = "best.safetensors"
LAST = "last.safetensors"
TASK = "frames"
# Keys that may differ between an interrupted run and its resumption, or only say where files
# live (the dataset's content is in the identity as the metadata's sha256).
RUN_CONTROL_KEYS = ("resume", "stop_after_epoch", "losses", "device", "num_threads", "val_every",
                    "runs_dir", "text_cache_dir", "frames_dir", "manifest", "decoder",
                    "splits", "jpeg_quality", "frames_per_video", "caption_kinds", "dataset",
                    "frozen_cache")
FROZEN_BATCH = 64  # images per pass through the frozen blocks


@dataclass
class Split:
    """One split's images after the frozen blocks: ``h`` (N, ...) float32, ``y`` (N,) int64,
    ``video`` (N,) int64 video index (for per-video accuracy); ``h_flip`` the same images
    mirrored left-right (train with ``flip = true`` only)."""

    h: torch.Tensor
    y: torch.Tensor
    video: torch.Tensor
    h_flip: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)


def frozen_outputs(model: FrameClip, rows: Sequence[FrameRow], desc: str, device: torch.device,
                   flip: bool = False) -> torch.Tensor:
    """Read, crop and normalise ``rows``' images (mirrored when ``flip``) and run them through
    the frozen blocks: (N, ...) float32 on the CPU."""
    a = model.args
    out: list[torch.Tensor] = []
    for b in progress(range(0, len(rows), FROZEN_BATCH), desc=desc, unit="batch",
                      total=math.ceil(len(rows) / FROZEN_BATCH)):
        imgs = np.stack([prepare(read_image(r.path), a.short_side, a.crop_size)
                         for r in rows[b:b + FROZEN_BATCH]])
        if flip:
            imgs = imgs[:, :, ::-1]
        out.append(model.frozen(to_input(imgs, a.mean, a.std).to(device)).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def frozen_split(model: FrameClip, ds: FrameDataset, rows: Sequence[FrameRow], desc: str,
                 device: torch.device) -> Split:
    """:func:`frozen_outputs` of ``rows`` with their labels and video indices."""
    vids = {v: i for i, v in enumerate(dict.fromkeys(r.video_id for r in rows))}
    return Split(frozen_outputs(model, rows, desc, device),
                 torch.tensor([ds.label(r) for r in rows], dtype=torch.long),
                 torch.tensor([vids[r.video_id] for r in rows], dtype=torch.long))


@torch.no_grad()
def evaluate(model: FrameClip, s: Split, loss: str, device: torch.device,
             batch: int = 256) -> dict[str, float]:
    """Top-1/top-5 per frame and per video (mean softmax over a video's frames), and the
    image -> caption loss, on split ``s``."""
    if len(s) == 0:
        return {}
    model.eval()
    logits = torch.cat([model.logits(s.h[i:i + batch].to(device)).cpu()
                        for i in range(0, len(s), batch)])
    hit = topk_correct(logits, s.y)
    probs = logits.softmax(dim=1)
    nv = int(s.video.max()) + 1
    vp = torch.zeros(nv, probs.shape[1]).index_add_(0, s.video, probs)
    vy = torch.zeros(nv, dtype=torch.long).index_copy_(0, s.video, s.y)
    vhit = topk_correct(vp, vy)
    return {"top1": hit[1].float().mean().item(), "top5": hit[5].float().mean().item(),
            "video_top1": vhit[1].float().mean().item(),
            "video_top5": vhit[5].float().mean().item(),
            "loss": clip_loss(logits, s.y, loss, symmetric=False).item(),
            "images": len(s), "videos": nv}


def lr_factor(frac: float) -> float:
    """Cosine decay from 1 to 0 over training (pure: resume needs no scheduler state)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(frac, 0.0), 1.0)))


def run_identity(cfg: FramesConfig, loss: str, dataset_sha: str, backbone_sha: str,
                 text_id: str) -> dict[str, Any]:
    """What a run's weights follow from (pipeline/runs.py)."""
    conf = {k: v for k, v in to_dict(cfg).items() if k not in RUN_CONTROL_KEYS}
    return {"config": conf, "loss": loss, "dataset": dataset_sha, "backbone": backbone_sha,
            "text": text_id}


def _saved(last: tuple[dict[str, torch.Tensor], dict[str, Any]] | None) -> SavedState | None:
    if last is None:
        return None
    meta = last[1]
    return SavedState(int(meta["epoch"]), fingerprint(meta["identity"]), meta["identity"])


def _write_json(path: Path, obj: Any) -> None:
    from pipeline.atomic import write_atomic

    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _better(new: dict[str, float], best: dict[str, float] | None) -> bool:
    if not best:
        return True
    return (new["top1"], new["top5"]) > (best["top1"], best["top5"])


@dataclass
class Prepared:
    """What every loss's run shares: the dataset, the model before training, the frozen
    outputs of each split, and the provenance."""

    ds: FrameDataset
    base: FrameClip
    train: Split
    val: Split
    test: Split
    provenance: dict[str, Any]


def prepare_data(cfg: FramesConfig, device: torch.device) -> Prepared:
    from extract.backbones import get_spec, resolve_checkpoint
    from train.text import build_text_encoder, embed_texts, encoder_id

    ds = load_frame_dataset(cfg.root)
    rows = {s: ds.split(s) for s in ("train", "val", "test")}
    if not rows["train"] or not rows["val"]:
        raise ValueError(f"{cfg.root / METADATA}: needs train and val images (val picks the best "
                         f"checkpoint); it has {len(rows['train'])} train and {len(rows['val'])} val")
    missing = sorted(set(ds.classes) - {r.cls for r in rows["train"]})
    if missing:
        log.warning("classes without train images (never learnt): %s", ", ".join(missing))
    shared = ({r.participant for r in rows["train"]} & {r.participant for r in rows["val"]}) - {""}
    if shared:
        log.warning("participant(s) %s appear in train and val: val is not held out",
                    ", ".join(sorted(shared)))
    enc = build_text_encoder(cfg.text_encoder, cfg.text_model, cfg.text_pretrained, cfg.seed, "cpu")
    emb = embed_texts(enc, list(ds.captions), cfg.text_cache)  # (C, E), cached on disk
    spec = get_spec(cfg.backbone)
    weights = resolve_checkpoint(cfg.checkpoint, Path(""), cfg.backbone, "rgb")
    mean, std = spec.mean_std("rgb")
    args = FrameModelArgs(
        backbone=cfg.backbone, train_blocks=cfg.train_blocks, embed_dim=int(emb.shape[1]), num_classes=len(ds.classes), short_side=cfg.short_side,
        crop_size=cfg.crop_size, dropout=cfg.dropout, mean=tuple(mean), std=tuple(std),
        batch_norm=cfg.batch_norm, logit_scale=cfg.logit_scale,
        learn_logit_scale=cfg.learn_logit_scale, backbone_blocks=cfg.backbone_blocks,
        pooling=cfg.pooling, grid_channels=cfg.grid_channels)
    base, backbone_sha = build_model(args, weights, cfg.seed)
    base.set_captions(torch.from_numpy(emb))
    base = base.to(device)
    t0 = time.perf_counter()
    metadata_sha = sha256_file(cfg.root / METADATA)
    cache = (frozen_cache_file(cfg, args, metadata_sha, backbone_sha) if cfg.frozen_cache
             else None)
    splits = read_frozen_cache(cache, ds, rows) if cache else None
    dirty = splits is None
    if splits is None:
        splits = {s: frozen_split(base, ds, rows[s], f"frozen blocks ({s})", device)
                  for s in ("train", "val", "test")}
    if cfg.flip and splits["train"].h_flip is None:
        splits["train"].h_flip = frozen_outputs(base, rows["train"], "frozen blocks (train, "
                                                "mirrored)", device, flip=True)
        dirty = True
    if not cfg.flip:
        splits["train"].h_flip = None
    if cache and dirty:
        write_frozen_cache(cache, splits)
    mb = sum(s.h.numel() for s in splits.values()) * 4 / 2**20
    log.info("frozen blocks: %d images in %.1fs (%.0f MB kept, input of the %d trained blocks)",
             sum(len(s) for s in splits.values()), time.perf_counter() - t0, mb, cfg.train_blocks)
    provenance = {
        "dataset": {"root": str(cfg.root), "metadata_sha256": metadata_sha,
                    "images": {s: len(rows[s]) for s in rows},
                    "videos": {s: len({r.video_id for r in rows[s]}) for s in rows},
                    "participants": {s: sorted({r.participant for r in rows[s]}) for s in rows}},
        "classes": list(ds.classes), "captions": list(ds.captions),
        "text_encoder": {"id": encoder_id(enc), "name": enc.name,
                         "weights_sha256": enc.weights_sha256, "random_init": enc.random_init},
        "backbone": {"name": cfg.backbone, "checkpoint": str(weights) if weights else None,
                     "sha256": backbone_sha},
        "frozen_seconds": round(time.perf_counter() - t0, 2),
    }
    return Prepared(ds, base, splits["train"], splits["val"], splits["test"], provenance)


def frozen_cache_file(cfg: FramesConfig, args: FrameModelArgs, metadata_sha: str,
                      backbone_sha: str) -> Path:
    """``<runs_dir>/.frames_cache/<key>.safetensors``: the frozen blocks' outputs, keyed by
    what they follow from (the dataset's metadata, the weights, the cut, the preprocessing).
    The images themselves are not hashed: ``cprclip frames`` never rewrites an image under the
    same metadata, and a user who edits images in place sets ``frozen_cache = false``."""
    from pipeline.provenance import sha256_text

    frozen_part = {"backbone": args.backbone, "weights": backbone_sha,
                   "cut": args.backbone_blocks - args.train_blocks,
                   "pooled": args.train_blocks == 0 and args.pooling == "avg",
                   "short_side": args.short_side, "crop_size": args.crop_size,
                   "mean": list(args.mean), "std": list(args.std), "metadata": metadata_sha}
    key = sha256_text(json.dumps(frozen_part, sort_keys=True))[:20]
    return Path(cfg.runs_dir) / ".frames_cache" / f"{args.backbone}-{key}.safetensors"


def read_frozen_cache(path: Path, ds: FrameDataset, rows: dict[str, list[FrameRow]]
                      ) -> dict[str, Split] | None:
    """The cached splits, or None when there is no usable cache (a damaged one is rebuilt)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        t = load_file(str(path))
        out = {}
        for s, rs in rows.items():
            fresh = Split(t[f"{s}.h"], torch.tensor([ds.label(r) for r in rs], dtype=torch.long),
                          t[f"{s}.video"])
            if len(fresh.h) != len(rs) or len(fresh.video) != len(rs):
                raise ValueError(f"{s}: {len(fresh.h)} rows cached, {len(rs)} in the dataset")
            if f"{s}.h_flip" in t:
                fresh.h_flip = t[f"{s}.h_flip"]
            out[s] = fresh
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        log.warning("%s: unusable frozen-feature cache (%s); recomputing it", path,
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    log.info("frozen blocks: outputs read from the cache %s", path)
    return out


def write_frozen_cache(path: Path, splits: dict[str, Split]) -> None:
    """Complete or absent (tmp + rename); a failure only costs the next call the time."""
    import os

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tensors = {}
    for s, sp in splits.items():
        tensors[f"{s}.h"] = sp.h.contiguous()
        tensors[f"{s}.video"] = sp.video.contiguous()
        if sp.h_flip is not None:
            tensors[f"{s}.h_flip"] = sp.h_flip.contiguous()
    try:
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.warning("%s: cannot write the frozen-feature cache (%s)", path, e)


def _lock(run_dir: Path) -> int | None:
    return take_lock(run_dir.with_name(f".{run_dir.name}.lock"),
                     f"run {run_dir}: another 'cprclip train task=frames' (pid {{pid}}) is "
                     "training it; wait for it to finish, or set another run_prefix")


def train_one(cfg: FramesConfig, loss: str, prep: Prepared, run_dir: Path,
              config_path: str | None = None) -> dict[str, Any]:
    """Train the model of one loss into ``run_dir`` (its lock held by the caller)."""
    device = next(prep.base.parameters()).device
    identity = run_identity(cfg, loss, prep.provenance["dataset"]["metadata_sha256"],
                            prep.provenance["backbone"]["sha256"],
                            prep.provenance["text_encoder"]["id"])
    model = copy.deepcopy(prep.base)
    opt = torch.optim.AdamW(model.param_groups(cfg.lr, cfg.backbone_lr, cfg.weight_decay))
    for g in opt.param_groups:
        g["base_lr"] = g["lr"]
    last = read_state(cfg.resume, run_dir / LAST, ckpt.load)
    start = resume_after(cfg.resume, _saved(last), identity, run_dir, cfg.epochs)
    best: dict[str, float] | None = None
    best_epoch = 0
    if start:
        tensors, meta = last
        model.load_state_dict(ckpt.strip_prefix(tensors, "model."))
        ckpt.load_optimizer(opt, tensors, meta["param_groups"])
        best, best_epoch = meta.get("best"), int(meta.get("best_epoch", 0))
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (LAST, BEST, "config.json"):
            (run_dir / name).unlink(missing_ok=True)
    del last
    metrics = MetricsLog(run_dir / METRICS_NAME)
    metrics.start(start)
    cfg_dict = to_dict(cfg)
    record: dict[str, Any] = {
        "task": TASK, "loss": loss, "config": cfg_dict, "config_file": config_path,
        "model_args": model.args.to_dict(), **prep.provenance,
        "code_version": code_version(), "torch_version": torch.__version__,
        "runtime": describe(device, False, torch.get_num_threads()), "finished": False,
    }
    _write_json(run_dir / "config.json", record)
    writer = open_tensorboard(run_dir, start + 1 if start else None)  # x axis: epochs

    n = len(prep.train)
    nb = max(1, n // cfg.batch_size)  # full batches only: a batch of 1 has no negatives
    stop = cfg.epochs if not cfg.stop_after_epoch else min(cfg.epochs, cfg.stop_after_epoch)
    t_start = time.perf_counter()
    val: dict[str, float] = {}

    def save_last(done: int) -> None:
        opt_t, groups = ckpt.optimizer_tensors(opt)
        ckpt.save(run_dir / LAST, {**ckpt.with_prefix(model.state_dict(), "model."), **opt_t},
                  {"epoch": done, "param_groups": groups, "identity": identity, "best": best,
                   "best_epoch": best_epoch, "task": TASK})

    try:
        for epoch in progress(range(start, stop), desc=run_dir.name, total=stop - start,
                              unit="epoch"):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout masks: (seed, epoch) only
            rng = np.random.default_rng([cfg.seed, epoch])
            perm = torch.from_numpy(rng.permutation(n))
            mirror = torch.from_numpy(rng.random(n) < 0.5) if prep.train.h_flip is not None else None
            model.train()
            total = 0.0
            for b in range(nb):
                idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size] if nb > 1 else perm
                f = lr_factor((epoch + b / nb) / cfg.epochs)
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * f
                h = prep.train.h[idx]
                if mirror is not None:  # half the images mirrored: left and right views swap
                    m = mirror[idx].view(-1, *([1] * (h.dim() - 1)))
                    h = torch.where(m, prep.train.h_flip[idx], h)
                logits = model.logits(h.to(device))
                lv = clip_loss(logits, prep.train.y[idx].to(device), loss, cfg.symmetric)
                opt.zero_grad(set_to_none=True)
                lv.backward()
                opt.step()
                total += lv.item()
            done = epoch + 1
            row: dict[str, Any] = {"epoch": done, "train/loss": total / nb,
                                   "train/lr": cfg.lr * lr_factor(done / cfg.epochs),
                                   "train/logit_scale": model.scale().item(),
                                   "train/epoch_s": time.perf_counter() - t0}
            if done % cfg.val_every == 0 or done == stop:
                val = evaluate(model, prep.val, loss, device)
                row.update({f"val/{k}": v for k, v in val.items()})
                if _better(val, best):
                    best, best_epoch = val, done
                    _save_best(run_dir, model, loss, done, val)
            metrics.append(row)
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(k, v, done)
            if done % cfg.val_every == 0 or done == stop:
                save_last(done)
    finally:
        writer.close()
    seconds = time.perf_counter() - t_start
    finished = stop == cfg.epochs
    test: dict[str, float] = {}
    if finished and len(prep.test) and (run_dir / BEST).is_file():
        tensors, _ = ckpt.load(run_dir / BEST)
        scored = copy.deepcopy(prep.base)
        scored.load_state_dict(ckpt.strip_prefix(tensors, "model."))
        test = evaluate(scored, prep.test, loss, device)
    record.update({"finished": finished, "epochs_done": stop, "best_epoch": best_epoch,
                   "best_val": best, "final_val": val, "test_of_best": test,
                   "train_seconds_this_call": round(seconds, 2)})
    if (run_dir / BEST).is_file():
        record["checkpoint_sha256"] = sha256_file(run_dir / BEST)
    _write_json(run_dir / "config.json", record)
    log.info("%s: %s after %d epoch(s) in %.1fs; best val top-1 %.3f top-5 %.3f "
             "(epoch %d) -> %s", run_dir.name, "finished" if finished else "stopped", stop, seconds,
             (best or {}).get("top1", float("nan")), (best or {}).get("top5", float("nan")),
             best_epoch, run_dir)
    return {"loss": loss, "run_dir": str(run_dir), "epochs": stop, "finished": finished,
            "seconds": seconds, "best_epoch": best_epoch, "best_val": best or {}, "test": test}


def _save_best(run_dir: Path, model: FrameClip, loss: str, epoch: int,
               val: dict[str, float]) -> None:
    ckpt.save(run_dir / BEST, ckpt.with_prefix(model.state_dict(), "model."),
              {"task": TASK, "model_args": model.args.to_dict(), "loss": loss, "epoch": epoch,
               "val": val})


def train_frames(cfg: FramesConfig, config_path: str | None = None) -> list[dict[str, Any]]:
    """Train one model per loss in ``cfg.losses``; the frozen outputs are shared."""
    if cfg.num_threads != 0:
        torch.set_num_threads(resolve_threads(cfg.num_threads, 0, "[frames] num_threads"))
    device = pick_device(cfg.device)
    runs = {loss: safe_child(cfg.runs_dir, cfg.run_name(loss)) for loss in cfg.losses}
    log.info("training %s on %s, %d torch thread(s)", ", ".join(str(p) for p in runs.values()),
             device, torch.get_num_threads())
    locks: list[int | None] = []
    try:
        for run_dir in runs.values():  # every lock first: a second call refuses before work
            locks.append(_lock(run_dir))
        prep = prepare_data(cfg, device)
        return [train_one(cfg, loss, prep, runs[loss], config_path) for loss in cfg.losses]
    finally:
        for fd in locks:
            release(fd)


def cli_main(config_path: str | None, overrides: Sequence[str]) -> int:
    """``cprclip train task=frames [key=value ...]``: the ``[frames]`` section's keys."""
    import sys

    from frames.layout import FrameDataError
    from pipeline.config import load_stage_config
    from pipeline.lock import LockHeld
    from pipeline.log import first_line

    cfg = load_stage_config(FramesConfig, "frames", config_path, list(overrides))
    try:
        results = train_frames(cfg, config_path)
    except (OSError, ValueError, KeyError, LockHeld, FrameDataError) as e:
        log.error("train task=frames: %s", first_line(e))
        return 1
    for r in results:
        b = r["best_val"]
        sys.stdout.write(f"{Path(r['run_dir']).name}\t{r['run_dir']}\tepochs={r['epochs']}\t"
                         f"{'finished' if r['finished'] else 'stopped'}\tbest_epoch={r['best_epoch']}"
                         f"\tval_top1={b.get('top1', float('nan')):.4f}"
                         f"\tval_top5={b.get('top5', float('nan')):.4f}"
                         f"\tseconds={r['seconds']:.1f}\n")
    return 0


__all__ = ["train_frames", "cli_main", "evaluate", "BEST", "LAST"]
