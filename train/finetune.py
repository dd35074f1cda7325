"""Backbone fine-tuning: train a TSN/TSM recognizer on the single-class videos (``cprclip finetune``).

CPR-Coach trains every backbone on its 14 single-class actions before the features are used; this
stage does the same for the pipeline, because no ImageNet/Kinetics weights can be downloaded here
and randomly initialised features barely see the errors.

Task: the single-class videos of the train split (every camera view is its own sample), 14-way
cross-entropy; validation on the single-class videos of the val split (top-1, mean class
accuracy, confusion matrix). One run per stream (``modality`` "rgb", "flow" or both in turn)
writes ``<runs_dir>/finetune/<backbone>-<modality>/``:

- ``checkpoint.safetensors``: the recognizer's state_dict, keys exactly as
  :func:`extract.backbones.build_recognizer` makes them (so ``cprclip extract`` loads it with
  ``checkpoint=auto`` or ``checkpoint=PATH``); safetensors metadata holds the resolved config
  JSON, the manifest sha256, backbone, modality and a fingerprint of everything that determines
  the weights. A rerun with the same fingerprint does nothing.
- ``state.pt``: the resumable training state (model, optimizer, grad scaler, epoch, torch RNG),
  written after every epoch with ``torch.save`` of tensors and plain values only, read back with
  ``torch.load(weights_only=True)``. An interrupted run resumes from it.
- ``metrics.jsonl`` (``train/`` and ``val/`` keys per epoch), TensorBoard events in ``tb/``,
  ``confusion.png`` / ``confusion.json`` (final val confusion matrix), ``config.json``.

Recipe (mmaction2's TSN training pipeline): per video, T segments with a random frame offset
inside each (``extract.sampling`` train mode; flow clips are 5 stacked x/y pairs), short side
resized to ``short_side``, mmaction2's ``MultiScaleCrop`` (scales 1/.875/.75/.66, corner/centre
offsets) resized to ``crop_size``; no horizontal flip by default (docs/finetune.md says why).
SGD with momentum, a cosine/step/constant schedule with optional linear warm-up, gradient-norm
clipping, mixed precision on CUDA. Shapes: B videos, T segments, C input channels (3 rgb,
10 flow), S crop size, K = 14 classes.

Randomness never depends on the process layout: the epoch permutation comes from
``seed + epoch`` (DistributedSampler), each sample's augmentation from ``(seed, epoch, index)``.
So a resumed run, a run with more data-loader workers and a ``torchrun`` run with the same
global ``batch_size`` see the same batches.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.atomic import save_figure_png, write_atomic
from pipeline.config import ConfigError, to_dict, to_json
from pipeline.taxonomy import CLASSES, NUM_CLASSES

log = logging.getLogger(__name__)

MODALITIES = ("rgb", "flow")
SCHEDULES = ("cosine", "step", "constant")
BN_MODES = ("train", "partial", "frozen")
FLOW_INITS = ("same", "rgb")
CACHES = ("disk", "none")
CHECKPOINT_NAME = "checkpoint.safetensors"
STATE_NAME = "state.pt"
FORMAT = "cprclip-finetune-1"
# Keys that change how fast a run goes or where files live, never the weights: left out of the
# fingerprint, so a checkpoint trained on a GPU box counts as up to date on a laptop, and a
# moved project is not retrained (the manifest's *content* is fingerprinted by its sha256).
NOT_FINGERPRINTED = ("workers", "device", "cache", "cache_dir", "threads", "manifest",
                     "runs_dir", "flow_epochs")  # flow_epochs reaches a stream as its `epochs`


@dataclass(frozen=True)
class FinetuneConfig:
    """``[finetune]`` of a config TOML. Defaults are the real-scale (CPR-Coach) recipe."""

    manifest: str = "data/cpr_coach/manifest.csv"  # from [common]
    runs_dir: str = "runs"  # from [common]: writes runs/finetune/<backbone>-<modality>/
    seed: int = 0  # from [common]: init, epoch order and augmentation all follow from it
    backbone: str = "tsn_r50"  # CPR-CLIP extracts TSN R50 features
    modality: tuple[str, ...] = ("rgb", "flow")  # the two TSN streams, trained one after the other
    segments: int = 8  # T per training clip: TSN's 8 (TSM must match extraction's T)
    short_side: int = 256  # mmaction2 Resize(-1, 256) before cropping, as extraction
    crop_size: int = 224  # ImageNet input size of the ResNet
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)  # mmaction2 TSN MultiScaleCrop scales
    flip: bool = False  # a mirrored view never occurs with fixed cameras (docs/finetune.md)
    epochs: int = 50  # mmaction2 fine-tunes TSN on UCF/HMDB-sized sets for tens of epochs
    flow_epochs: int = 0  # epochs of the flow stream; 0 = `epochs` (flow may converge sooner)
    batch_size: int = 32  # global videos per step; each of W processes takes batch_size / W
    lr: float = 0.00125  # mmaction2's 0.01 for batch 256, scaled linearly to batch 32
    momentum: float = 0.9  # mmaction2's TSN SGD
    weight_decay: float = 1e-4  # mmaction2's TSN SGD
    schedule: str = "cosine"  # cosine | step | constant (per-iteration, see lr_at)
    warmup_epochs: float = 0.0  # linear warm-up from 0.1 x lr; helps large batches from scratch
    milestones: tuple[int, ...] = (20, 40)  # step schedule: lr *= gamma at these epochs
    gamma: float = 0.1  # step schedule factor
    clip_grad: float = 40.0  # mmaction2's TSN max_norm; 0 disables clipping
    bn: str = "train"  # train: batch statistics | partial: mmaction2 partial BN | frozen: norm_eval
    sync_bn: bool = False  # SyncBatchNorm under torchrun on CUDA (torch has no CPU SyncBN)
    dropout: float | None = None  # head dropout; None keeps the backbone's (TSN 0.4, TSM 0.5)
    init_checkpoint: str = "none"  # mmaction2/torchvision/safetensors file; none = seeded random
    flow_init: str = "same"  # flow starts from: same = init_checkpoint | rgb = the finetuned RGB
    decoder: str = "auto"  # as extraction
    cache: str = "disk"  # disk: decode each video once into uint8 .npy under cache_dir | none
    cache_dir: str = ""  # "" = <runs_dir>/finetune/cache
    workers: int = 2  # data-loader processes (decode + crop) per training process
    device: str = "auto"  # auto: cuda (LOCAL_RANK) when present, else cpu
    amp: bool = True  # mixed precision on CUDA (bf16 when supported, else fp16 + GradScaler)
    cpu_amp: bool = False  # bf16 autocast on CPU: ~1.3-2x faster where AVX512-BF16/AMX exist
    threads: int = 0  # torch CPU threads; 0 = torch's default (one per core)
    val_every: int = 1  # validate every N epochs (and always after the last)

    def validate(self) -> None:
        from extract.backbones import BACKBONES

        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"[finetune] key '{key}': {msg}")

        if self.backbone not in BACKBONES:
            raise bad("backbone", f"{self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if not self.modality:
            raise bad("modality", "empty; choose rgb, flow or rgb,flow")
        for m in self.modality:
            if m not in MODALITIES:
                raise bad("modality", f"{m!r} is not one of {', '.join(MODALITIES)}")
            if m not in BACKBONES[self.backbone].modalities:
                raise bad("modality", f"backbone {self.backbone} takes only "
                                      f"{', '.join(BACKBONES[self.backbone].modalities)}")
        if len(set(self.modality)) != len(self.modality):
            raise bad("modality", f"{','.join(self.modality)} names a stream twice")
        choices = (("schedule", SCHEDULES), ("bn", BN_MODES), ("flow_init", FLOW_INITS),
                   ("cache", CACHES))
        for key, valid in choices:
            if getattr(self, key) not in valid:
                raise bad(key, f"{getattr(self, key)!r} is not one of {', '.join(valid)}")
        for key in ("segments", "crop_size", "short_side", "epochs", "batch_size", "val_every"):
            if getattr(self, key) < 1:
                raise bad(key, f"{getattr(self, key)} must be >= 1")
        if self.crop_size > self.short_side:
            raise bad("crop_size", f"{self.crop_size} is larger than short_side {self.short_side}")
        fixed = BACKBONES[self.backbone].fixed_input
        if fixed and self.crop_size != fixed:
            raise bad("crop_size", f"backbone {self.backbone} needs crop_size {fixed}")
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise bad("scales", f"{self.scales} must be non-empty, each in (0, 1]")
        if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0 or self.clip_grad < 0:
            raise bad("lr", "lr must be > 0; momentum, weight_decay, clip_grad >= 0")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
            raise bad("warmup_epochs", f"{self.warmup_epochs} must be in [0, epochs)")
        if self.flow_epochs < 0 or 0 < self.flow_epochs <= self.warmup_epochs:
            raise bad("flow_epochs", f"{self.flow_epochs} must be 0 (= epochs) or more than "
                                     f"warmup_epochs {self.warmup_epochs}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise bad("dropout", f"{self.dropout} must be in [0, 1)")
        if self.workers < 0 or self.threads < 0:
            raise bad("workers", "workers and threads must be >= 0")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise bad("device", f"{self.device!r} is not auto, cpu, cuda or cuda:N")


def clip_len(modality: str) -> int:
    """Frames per segment: 1 RGB frame, or 5 consecutive flow frames (10 channels)."""
    from extract.backbones import FLOW_CLIP_LEN

    return FLOW_CLIP_LEN if modality == "flow" else 1


def run_dir(cfg: FinetuneConfig, modality: str) -> Path:
    """``<runs_dir>/finetune/<backbone>-<modality>/`` (the checkpoint's folder)."""
    from extract.backbones import finetuned_checkpoint_path

    return finetuned_checkpoint_path(cfg.runs_dir, cfg.backbone, modality).parent


# --------------------------------------------------------------------------------------------
# Pure maths: schedule, crops, cross-modality init, metrics


def lr_at(cfg: FinetuneConfig, progress: float) -> float:
    """Learning rate at ``progress`` epochs (fractional: epoch + step / steps_per_epoch).

    Warm-up: linear from 0.1 x lr to lr over ``warmup_epochs`` (mmaction2's LinearLR start).
    Then ``cosine``: lr * (1 + cos(pi * done)) / 2 over the remaining epochs, reaching 0 at the
    end; ``step``: lr * gamma ** (milestones passed); ``constant``: lr.
    """
    base = cfg.lr
    if cfg.warmup_epochs > 0 and progress < cfg.warmup_epochs:
        return base * (0.1 + 0.9 * progress / cfg.warmup_epochs)
    if cfg.schedule == "cosine":
        span = cfg.epochs - cfg.warmup_epochs
        done = min(max((progress - cfg.warmup_epochs) / span, 0.0), 1.0)
        return base * 0.5 * (1.0 + math.cos(math.pi * done))
    if cfg.schedule == "step":
        return base * cfg.gamma ** sum(progress >= m for m in cfg.milestones)
    return base


def multiscale_crop_box(height: int, width: int, scales: tuple[float, ...],
                        rng: np.random.Generator, max_wh_scale_gap: int = 1
                        ) -> tuple[int, int, int, int]:
    """mmaction2's ``MultiScaleCrop(random_crop=False, num_fixed_crops=5)`` box: (y, x, h, w).

    Crop sides are ``int(short_side * s)`` for s in ``scales``; width and height are drawn as a
    pair whose scale indices differ by at most ``max_wh_scale_gap`` (aspect jitter); the box
    sits at one of 5 fixed places (4 corners, centre) on a grid of quarter steps.
    """
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides)
             if abs(i - j) <= max_wh_scale_gap]
    cw, ch = pairs[int(rng.integers(len(pairs)))]
    ws, hs = (width - cw) // 4, (height - ch) // 4
    offsets = [(0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws)]
    y, x = offsets[int(rng.integers(len(offsets)))]
    return y, x, ch, cw


def crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """(N, H, W, c) uint8 -> (N, size, size, c): crop ``box`` (y, x, h, w), bilinear resize
    (mmaction2's ``Resize(keep_ratio=False)`` after ``MultiScaleCrop``)."""
    import cv2

    y, x, h, w = box
    crop = frames[:, y:y + h, x:x + w]
    if (h, w) == (size, size):
        return np.ascontiguousarray(crop)
    n, c = crop.shape[0], crop.shape[-1]
    out = np.empty((n, size, size, c), np.uint8)
    for i in range(n):
        out[i] = cv2.resize(crop[i], (size, size), interpolation=cv2.INTER_LINEAR).reshape(
            size, size, c)
    return out


def hflip(frames: np.ndarray, modality: str) -> np.ndarray:
    """Mirror (N, H, W, c) frames left-right; for flow the x component changes sign too
    (uint8 flow around 128: x -> 255 - x), because mirrored motion points the other way."""
    out = frames[:, :, ::-1].copy()
    if modality == "flow":
        out[..., 0] = 255 - out[..., 0]
    return out


def cross_modality_conv1(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """TSN's cross-modality init: an RGB first conv (O, 3, k, k) -> (O, in_channels, k, k) by
    averaging over the RGB channels and repeating the mean for every flow channel."""
    if weight.ndim != 4:
        raise ValueError(f"conv1 weight must be (O, I, k, k), got {tuple(weight.shape)}")
    return weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1).contiguous()


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int = NUM_CLASSES
                     ) -> np.ndarray:
    """(N,) true and predicted class ids -> (K, K) int64 counts, rows = true class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
    return cm


def accuracy_metrics(cm: np.ndarray) -> dict[str, float]:
    """Top-1 and mean class accuracy (mean per-class recall over classes present) of a
    confusion matrix."""
    total = cm.sum()
    per_class = cm.sum(1)
    present = per_class > 0
    recall = np.diag(cm)[present] / per_class[present]
    return {"top1": float(np.trace(cm) / total) if total else 0.0,
            "mean_class_acc": float(recall.mean()) if present.any() else 0.0}


# --------------------------------------------------------------------------------------------
# Initial weights


_TV_LAYER = re.compile(r"^(layer\d+\.\d+\.)(conv\d|bn\d|downsample\.[01])\.(.+)$")


def torchvision_to_mmaction(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ResNet state dict (``conv1.weight``, ``layer1.0.bn1.weight``) to
    mmaction2's ``backbone.`` names (``backbone.conv1.conv.weight``,
    ``backbone.layer1.0.conv1.bn.weight``). ``fc.*`` (ImageNet's 1000 classes) is dropped.
    Keys that already look like mmaction2's are returned unchanged."""
    if any(k.startswith(("backbone.", "cls_head.")) for k in sd):
        return dict(sd)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("fc."):
            continue
        if k.startswith("conv1."):
            out["backbone.conv1.conv." + k[len("conv1."):]] = v
        elif k.startswith("bn1."):
            out["backbone.conv1.bn." + k[len("bn1."):]] = v
        elif m := _TV_LAYER.match(k):
            prefix, part, rest = m.groups()
            if part.startswith("conv"):
                name = f"{part}.conv"
            elif part.startswith("bn"):
                name = f"conv{part[2:]}.bn"
            else:
                name = "downsample.conv" if part.endswith("0") else "downsample.bn"
            out[f"backbone.{prefix}{name}.{rest}"] = v
        else:
            out[k] = v
    return out


def init_weights(model: nn.Module, path: Path, modality: str) -> str:
    """Load ``path`` (safetensors, or a ``.pth`` read with ``weights_only=True``: an mmaction2
    recognizer, a torchvision ResNet, or our own checkpoint) into ``model`` as a starting point.

    A tensor whose input-channel count differs from the model's (a 3-channel RGB conv1 for a
    10-channel flow model) gets the cross-modality init; other shape mismatches (a 400-class
    Kinetics head) are skipped. Returns the file's sha256.
    """
    from extract.backbones import WeightsError, _read_state_dict
    from pipeline.provenance import sha256_file

    sd = _read_state_dict(Path(path))
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    sd = torchvision_to_mmaction(sd)
    own = model.state_dict()
    take: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k not in own:
            continue
        want = own[k].shape
        if v.shape == want:
            take[k] = v
        elif (v.ndim == 4 and len(want) == 4 and v.shape[0] == want[0]
              and v.shape[2:] == want[2:]):
            log.info("%s: %s %s -> %s by cross-modality init (%s)", path.name, k,
                     tuple(v.shape), tuple(want), modality)
            take[k] = cross_modality_conv1(v.float(), want[1]).to(own[k].dtype)
        else:
            log.warning("%s: %s has shape %s, model wants %s; skipped", path.name, k,
                        tuple(v.shape), tuple(want))
    if not take:
        raise WeightsError(f"{path}: no tensor matches the model (first keys: "
                           f"{', '.join(list(sd)[:3])}); wrong checkpoint for this backbone?")
    missing = [k for k in own if k not in take]
    model.load_state_dict(take, strict=False)
    if missing:
        log.info("%s: %d tensor(s) kept at random init, e.g. %s", path.name, len(missing),
                 ", ".join(missing[:4]))
    return sha256_file(path)


# --------------------------------------------------------------------------------------------
# Data


def single_class_records(records: list, split: str) -> list:
    """The single-class videos of ``split``, in manifest order (every view is a sample)."""
    return [r for r in records if r.split == split and r.is_single]


class FrameSource:
    """All decoded frames of a video at ``short_side`` (F, H, W, c) uint8, c = 3 rgb / 2 flow.

    With a cache folder, each video is decoded once into ``<cache>/<video>-<key>.npy`` (written
    atomically, read memory-mapped) and later epochs, processes and ranks index that; the key
    covers the file's path, size and mtime, decoder and short side, so an edited video is
    decoded again. Without a cache, only the asked-for frames are decoded each time.
    """

    def __init__(self, modality: str, short_side: int, decoder: str, cache_dir: Path | None):
        self.modality, self.short, self.decoder = modality, short_side, decoder
        self.cache_dir = cache_dir / f"{modality}-s{short_side}" if cache_dir else None

    def _open(self, rec):
        from extract.decoders import DecodeError, open_video
        from extract.flow import open_flow

        if self.modality == "rgb":
            return open_video(rec.path, self.decoder, resize_short=self.short)
        if rec.flow is None:
            raise DecodeError(f"{rec.video_id}: no flow in the manifest (run 'cprclip flow')")
        return open_flow(rec.flow, self.decoder, resize_short=self.short)

    def _cache_file(self, rec) -> Path:
        src = Path(rec.path if self.modality == "rgb" else rec.flow)
        st = src.stat()
        key = f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.decoder}|{self.short}"
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", rec.video_id)[:80]
        return self.cache_dir / f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npy"

    def all_frames(self, rec) -> np.ndarray:
        """(F, H, W, c) uint8, memory-mapped when cached."""
        if self.cache_dir is not None:
            path = self._cache_file(rec)
            if path.is_file():
                try:
                    return np.load(path, mmap_mode="r")
                except ValueError:  # a damaged file: decode again
                    path.unlink(missing_ok=True)
        with self._open(rec) as r:
            frames = r.get(np.arange(r.num_frames), self.short)
        if self.cache_dir is not None:
            buf = io.BytesIO()
            np.save(buf, frames)
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                write_atomic(path, buf.getbuffer())
            except OSError as e:  # e.g. a full disk: train on without the cache
                log.warning("cannot write the frame cache (%s); decoding without it", e)
                self.cache_dir = None
        return frames

    def frames(self, rec, indices_fn) -> np.ndarray:
        """Frames ``indices_fn(num_frames)`` (N,) of a video: (N, H, W, c) uint8."""
        if self.cache_dir is not None:
            allf = self.all_frames(rec)
            return np.ascontiguousarray(allf[indices_fn(len(allf))])
        with self._open(rec) as r:
            return r.get(indices_fn(r.num_frames), self.short)


class ClipDataset(torch.utils.data.Dataset):
    """Single-class videos -> ``(clip (T, S, S, C) uint8, label, index)``.

    Train mode: random segment offsets, multi-scale crop, optional flip, drawn from
    ``np.random.default_rng((seed, epoch, index))``. Eval mode: segment centres and a centre
    crop at ``crop_size`` (extraction's recipe with ``crop = "center"``). C = 3 rgb, or 10 flow
    channels in x1, y1, ..., x5, y5 order.
    """

    def __init__(self, records: list, cfg: FinetuneConfig, modality: str, train: bool,
                 source: FrameSource):
        self.records, self.cfg, self.modality, self.train = records, cfg, modality, train
        self.source = source

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        """``key``: an index, or ``(epoch, index)`` from :class:`EpochSampler` (the epoch picks
        the augmentation, so persistent workers need no state from the main process)."""
        from extract.sampling import segment_indices
        from extract.transforms import center_crop, stack_flow

        epoch, i = key if isinstance(key, tuple) else (0, key)
        cfg, rec = self.cfg, self.records[i]
        T, L = cfg.segments, clip_len(self.modality)
        rng = np.random.default_rng((cfg.seed, epoch, i))
        mode = "train" if self.train else "test"
        frames = self.source.frames(
            rec, lambda n: segment_indices(n, T, L, mode, rng).reshape(-1))  # (T*L, H, W, c)
        if self.train:
            box = multiscale_crop_box(frames.shape[1], frames.shape[2], cfg.scales, rng)
            frames = crop_resize(frames, box, cfg.crop_size)
            if cfg.flip and rng.random() < 0.5:
                frames = hflip(frames, self.modality)
        else:
            frames = center_crop(frames, cfg.crop_size)[0]
        if self.modality == "flow":
            clip = stack_flow(frames[None], L)[0]  # (T, S, S, 2L)
        else:
            clip = np.ascontiguousarray(frames)  # (T, S, S, 3)
        return torch.from_numpy(clip), int(rec.labels[0]), i


class EpochSampler(torch.utils.data.Sampler):
    """A DistributedSampler whose items are ``(epoch, index)``: epoch order from
    ``seed + epoch``, this rank's share ``rank::world`` of it, last partial batch dropped."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.inner = torch.utils.data.distributed.DistributedSampler(
            range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, i) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


# --------------------------------------------------------------------------------------------
# Model


class SegmentClassifier(nn.Module):
    """Class scores of T-segment clips: (B*T, C, S, S) normalised -> (B, K).

    TSN/TSM: mmaction2's own path (``backbone`` then ``cls_head`` with its segment consensus);
    CLIP ViT: per-frame scores averaged over T. ``.model`` is the recognizer whose state_dict
    is saved (the keys ``cprclip extract`` loads).
    """

    def __init__(self, model: nn.Module, segments: int):
        super().__init__()
        self.model = model
        self.segments = segments

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "cls_head"):
            return self.model.cls_head(self.model.backbone(x), num_segs=self.segments)
        scores = self.model(x)
        return scores.view(-1, self.segments, scores.shape[-1]).mean(1)


def apply_bn_mode(model: nn.Module, mode: str) -> None:
    """After ``model.train()``: ``frozen`` puts every BatchNorm in eval mode (running statistics,
    mmaction2's ``norm_eval``; affine parameters still learn); ``partial`` does that to all but
    the first BatchNorm and freezes their affine parameters too (mmaction2's ``partial_bn``,
    TSN's recipe for small data); ``train`` leaves batch statistics on."""
    if mode == "train":
        return
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for i, m in enumerate(bns):
        if mode == "partial" and i == 0:
            continue
        m.eval()
        if mode == "partial":
            for p in m.parameters():
                p.requires_grad_(False)


def to_input(clips: torch.Tensor, mean, std, channels_last: bool) -> torch.Tensor:
    """(B, T, S, S, C) uint8 -> (B*T, C, S, S) float32 normalised; frames of one video stay
    consecutive in segment order (what TSM's temporal shift expects)."""
    from extract.transforms import normalize

    b, t, h, w, c = clips.shape
    x = normalize(clips.reshape(b * t, h, w, c), mean, std).permute(0, 3, 1, 2)
    return x if channels_last else x.contiguous()


def pick_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        return torch.device("cpu")
    return torch.device(device)


# --------------------------------------------------------------------------------------------
# Checkpoints


def fingerprint(cfg: FinetuneConfig, modality: str, manifest_sha: str, init_sha: str) -> str:
    """sha256 of what determines a stream's weights: its config (with this one modality, less
    the speed-only keys), the manifest and the initial weights."""
    d = {k: v for k, v in to_dict(cfg).items() if k not in NOT_FINGERPRINTED}
    d["modality"] = modality
    blob = json.dumps({"config": d, "manifest_sha256": manifest_sha, "init_sha256": init_sha},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_checkpoint_meta(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of a finetune checkpoint ({} when absent or unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 - missing, truncated or not safetensors: not up to date
        return {}


def save_checkpoint(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """The recognizer's state_dict as safetensors with string metadata; tmp + rename."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomic(path, save(tensors, metadata={k: str(v) for k, v in meta.items()}))


def save_state(path: Path, state: dict[str, Any]) -> None:
    # Serialised in memory: torch's zip writer reports a full disk as an opaque RuntimeError.
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getbuffer())


def load_state(path: Path) -> dict[str, Any] | None:
    """The training state, or None when absent or unreadable (a run then starts over)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated file, or not ours
        log.warning("%s: cannot read the training state (%s); starting over", path,
                    str(e).splitlines()[0][:120] if str(e) else type(e).__name__)
        return None


def plot_confusion(cm: np.ndarray, path: Path, title: str) -> None:
    """Row-normalised confusion matrix with counts and class names, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    names = [f"{i} {c}" for i, c in enumerate(CLASSES[:cm.shape[0]])]
    fig, ax = plt.subplots(figsize=(9, 8), dpi=100)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    save_figure_png(fig, path)


# --------------------------------------------------------------------------------------------
# Distributed helpers


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def init_distributed(device: torch.device) -> Dist:
    """Join the ``torchrun`` process group (nccl on CUDA, gloo on CPU) when WORLD_SIZE > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if world > 1:
        return Dist(dist.get_rank(), dist.get_world_size())
    return Dist()


# --------------------------------------------------------------------------------------------
# The loop


@dataclass
class StreamResult:
    modality: str
    checkpoint: Path
    status: str  # "trained" | "up to date" | "stopped"
    epochs_run: int = 0
    seconds: float = 0.0
    val: dict[str, float] = dataclasses.field(default_factory=dict)


def _init_source(cfg: FinetuneConfig, modality: str) -> tuple[Path | None, str]:
    """(initial weights file or None, its sha256 or "random-init")."""
    from extract.backbones import WeightsError, finetuned_checkpoint_path
    from pipeline.provenance import sha256_file

    if modality == "flow" and cfg.flow_init == "rgb":
        p = finetuned_checkpoint_path(cfg.runs_dir, cfg.backbone, "rgb")
        if not p.is_file():
            raise WeightsError(f"{p}: flow_init=rgb needs the finetuned RGB stream; run "
                               "finetune with modality=rgb,flow (rgb is trained first)")
        return p, sha256_file(p)
    value = (cfg.init_checkpoint or "none").strip()
    if value.lower() in ("none", ""):
        return None, "random-init"
    p = Path(value.format(modality=modality, backbone=cfg.backbone))
    if not p.is_file():
        raise WeightsError(f"{p}: init_checkpoint file not found (config key 'init_checkpoint')")
    return p, sha256_file(p)


def _evaluate(net: nn.Module, loader, device: torch.device, mean, std, channels_last: bool,
              amp_dtype, dist_: Dist) -> tuple[np.ndarray, dict[str, float]]:
    """Confusion matrix and metrics over this rank's val shard, gathered from all ranks."""
    net.eval()
    labels, preds = [], []
    with torch.inference_mode():
        for clips, y, _ in loader:
            x = to_input(clips.to(device, non_blocking=True), mean, std, channels_last)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                scores = net(x)
            preds.append(scores.float().argmax(1).cpu().numpy())
            labels.append(y.numpy())
    mine = (np.concatenate(labels) if labels else np.zeros(0, np.int64),
            np.concatenate(preds) if preds else np.zeros(0, np.int64))
    parts = dist_.gather(mine)
    cm = confusion_matrix(np.concatenate([p[0] for p in parts]),
                          np.concatenate([p[1] for p in parts]))
    return cm, accuracy_metrics(cm)


def finetune_stream(cfg: FinetuneConfig, modality: str, records: list, manifest_sha: str,
                    device: torch.device, dist_: Dist = Dist(),
                    stop_after_epoch: int | None = None) -> StreamResult:
    """Train (or resume, or skip when up to date) one stream; see the module docstring."""
    from extract.backbones import build_recognizer, get_spec
    from pipeline.log import progress
    from pipeline.provenance import code_version

    t_start = time.time()
    out = run_dir(cfg, modality)
    ckpt = out / CHECKPOINT_NAME
    init_path, init_sha = _init_source(cfg, modality)
    fp = fingerprint(cfg, modality, manifest_sha, init_sha)
    meta = read_checkpoint_meta(ckpt)
    if meta.get("fingerprint") == fp:
        log.info("%s is up to date (same config, manifest and init); nothing to do", ckpt)
        return StreamResult(modality, ckpt, "up to date",
                            val={k[4:]: float(v) for k, v in meta.items() if k.startswith("val_")})

    train_recs = single_class_records(records, "train")
    val_recs = single_class_records(records, "val")
    per_rank = cfg.batch_size // dist_.world
    if cfg.batch_size % dist_.world:
        raise ConfigError(f"[finetune] batch_size {cfg.batch_size} is not divisible by the "
                          f"{dist_.world} processes")
    if len(train_recs) < cfg.batch_size:
        raise ConfigError(f"[finetune] the train split has {len(train_recs)} single-class "
                          f"video(s), fewer than batch_size {cfg.batch_size}")
    if dist_.main:
        out.mkdir(parents=True, exist_ok=True)
    dist_.barrier()

    spec = get_spec(cfg.backbone)
    mean, std = spec.mean_std(modality)
    model = build_recognizer(cfg.backbone, modality, NUM_CLASSES, cfg.segments, cfg.seed)
    if cfg.dropout is not None:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = cfg.dropout
    init_desc = "random"
    if init_path is not None:
        init_weights(model, init_path, modality)
        init_desc = f"{init_path} (sha256 {init_sha[:12]})"
    model.to(device)
    cuda = device.type == "cuda"
    channels_last = cuda  # NHWC convolutions are faster on tensor cores; plain NCHW on CPU
    if channels_last:
        model.to(memory_format=torch.channels_last)
    amp_dtype = None
    if cfg.amp and cuda:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif cfg.cpu_amp and not cuda:
        amp_dtype = torch.bfloat16
    inner = SegmentClassifier(model, cfg.segments)
    if dist_.world > 1 and cfg.sync_bn:
        if cuda:
            inner = nn.SyncBatchNorm.convert_sync_batchnorm(inner)
        else:
            log.warning("sync_bn needs CUDA; using per-process BatchNorm statistics")
    inner.train()
    # Before DDP and the optimizer: partial BN sets requires_grad, which both look at.
    apply_bn_mode(inner, cfg.bn)
    params = [p for p in inner.parameters() if p.requires_grad]
    net: nn.Module = inner
    if dist_.world > 1:
        net = nn.parallel.DistributedDataParallel(
            inner, device_ids=[device.index] if cuda else None)
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    # Resume when a state with the same fingerprint exists.
    state_path = out / STATE_NAME
    start_epoch = 0
    state = load_state(state_path)
    if state is not None and state.get("fingerprint") == fp:
        inner.model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if cuda and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        start_epoch = int(state["epoch"])
        log.info("%s: resuming after epoch %d of %d", out, start_epoch, cfg.epochs)
    else:
        if state is not None:
            log.warning("%s: the saved training state is for another config/manifest/init; "
                        "starting over", state_path)
        torch.manual_seed(cfg.seed)  # dropout masks: a fresh run is repeatable
    del state

    cache_dir = None
    if cfg.cache == "disk":
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.runs_dir) / "finetune" / "cache"
    # Only training clips come from the cache: validation reads T x L frames per video a few
    # times, which costs less than caching every frame of it.
    train_ds = ClipDataset(train_recs, cfg, modality, True,
                           FrameSource(modality, cfg.short_side, cfg.decoder, cache_dir))
    val_ds = ClipDataset(val_recs[dist_.rank::dist_.world], cfg, modality, False,
                         FrameSource(modality, cfg.short_side, cfg.decoder, None))
    sampler = EpochSampler(len(train_ds), cfg.seed, dist_.rank, dist_.world)
    # Workers stay up between epochs; their seeds come from a private generator, so they never
    # consume the global torch RNG (dropout), which a resumed run restores from the state.
    from extract.decoders import init_decode_worker

    loader_kw = dict(num_workers=cfg.workers, pin_memory=cuda,
                     worker_init_fn=(functools.partial(init_decode_worker, workers=cfg.workers)
                                     if cfg.workers else None),
                     persistent_workers=cfg.workers > 0,
                     generator=torch.Generator().manual_seed(cfg.seed))
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=per_rank, sampler=sampler,
                                               drop_last=True, **loader_kw)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=per_rank, shuffle=False,
                                             **loader_kw)
    steps = len(train_loader)

    writer = None
    metrics_path = out / "metrics.jsonl"
    if dist_.main:
        from torch.utils.tensorboard import SummaryWriter

        write_atomic(out / "config.json", json.dumps(
            {"config": to_dict(cfg), "modality": modality, "manifest_sha256": manifest_sha,
             "init": init_desc, "fingerprint": fp, "code_version": code_version()},
            indent=2, sort_keys=True, default=str) + "\n")
        kept = []
        if start_epoch and metrics_path.exists():
            kept = [line for line in metrics_path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("epoch", 0) <= start_epoch]
        metrics_text = "".join(line + "\n" for line in kept)
        write_atomic(metrics_path, metrics_text)
        if not start_epoch and (out / "tb").is_dir():
            import shutil

            shutil.rmtree(out / "tb")
        writer = SummaryWriter(str(out / "tb"), purge_step=start_epoch * steps)
        log.info("finetune %s-%s: %d train / %d val single-class videos, %d step(s) of %d "
                 "videos x %d process(es) per epoch, %s, init %s", cfg.backbone, modality,
                 len(train_recs), len(val_recs), steps, per_rank, dist_.world, device, init_desc)

    cm, val = None, {}
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        sampler.set_epoch(epoch)
        net.train()
        apply_bn_mode(net, cfg.bn)
        loss_sum, correct, seen = 0.0, 0.0, 0.0
        batches = train_loader
        if dist_.main:
            batches = progress(train_loader, desc=f"finetune {modality} {epoch + 1}/{cfg.epochs}",
                               total=steps, unit="batch")
        lr = cfg.lr
        for i, (clips, y, _) in enumerate(batches):
            lr = lr_at(cfg, epoch + i / steps)
            for g in opt.param_groups:
                g["lr"] = lr
            x = to_input(clips.to(device, non_blocking=True), mean, std, channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                scores = net(x)
            loss = nn.functional.cross_entropy(scores.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.clip_grad > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(params, cfg.clip_grad)
            scaler.step(opt)
            scaler.update()
            loss_sum += float(loss.detach()) * len(y)
            correct += float((scores.detach().argmax(1) == y).sum())
            seen += len(y)
            if writer is not None:
                step = epoch * steps + i
                writer.add_scalar("train/loss_step", float(loss.detach()), step)
                writer.add_scalar("train/lr", lr, step)
        loss_sum, correct, seen = dist_.sum([loss_sum, correct, seen], device)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": (epoch + 1) * steps,
                               "train/loss": loss_sum / max(seen, 1),
                               "train/top1": correct / max(seen, 1), "train/lr": lr}
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
            cm, val = _evaluate(inner, val_loader, device, mean, std, channels_last, amp_dtype,
                                dist_)
            row.update({f"val/{k}": v for k, v in val.items()})
        secs = time.time() - t0
        row["time_s"] = round(secs, 2)
        row["train/images_per_s"] = seen * cfg.segments / max(secs, 1e-9)
        if dist_.main:
            # rewritten whole (a few lines), so a full disk never leaves half a line
            metrics_text += json.dumps(row, sort_keys=True) + "\n"
            write_atomic(metrics_path, metrics_text)
            for k, v in row.items():
                if "/" in k:
                    writer.add_scalar(k, v, (epoch + 1) * steps)
            writer.flush()
            shown = " ".join(f"{k} {v:.4g}" for k, v in row.items() if "/" in k)
            log.info("%s epoch %d/%d: %s (%.1f s)", modality, epoch + 1, cfg.epochs, shown, secs)
            save_state(state_path, {
                "fingerprint": fp, "epoch": epoch + 1,
                "model": {k: v.detach().cpu() for k, v in inner.model.state_dict().items()},
                "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if cuda else None})
        dist_.barrier()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and \
                epoch + 1 < cfg.epochs:
            if writer is not None:
                writer.close()
            log.info("%s: stopped after epoch %d as asked; rerun to resume", out, epoch + 1)
            return StreamResult(modality, ckpt, "stopped", epoch + 1 - start_epoch,
                                time.time() - t_start, val)

    if cm is None:  # resumed after the last epoch: evaluate what the state holds
        cm, val = _evaluate(inner, val_loader, device, mean, std, channels_last, amp_dtype, dist_)
    if dist_.main:
        writer.close()
        title = (f"{cfg.backbone}-{modality} val: top-1 {val['top1']:.3f}, mean class acc "
                 f"{val['mean_class_acc']:.3f} ({int(cm.sum())} videos)")
        plot_confusion(cm, out / "confusion.png", title)
        write_atomic(out / "confusion.json", json.dumps(
            {"classes": list(CLASSES), "rows": "true class", "columns": "predicted class",
             "matrix": cm.tolist(), **val}, indent=1) + "\n")
        save_checkpoint(inner.model, ckpt, {
            "format": FORMAT, "backbone": cfg.backbone, "modality": modality,
            "segments": cfg.segments, "num_classes": NUM_CLASSES, "config": to_json(cfg),
            "manifest_sha256": manifest_sha, "init": init_desc, "init_sha256": init_sha,
            "fingerprint": fp, "epochs": cfg.epochs, "code_version": code_version(),
            **{f"val_{k}": f"{v:.6f}" for k, v in val.items()}})
        log.info("wrote %s (val top-1 %.3f, mean class acc %.3f)", ckpt, val["top1"],
                 val["mean_class_acc"])
    dist_.barrier()
    return StreamResult(modality, ckpt, "trained", cfg.epochs - start_epoch,
                        time.time() - t_start, val)


def stream_config(cfg: FinetuneConfig, modality: str) -> FinetuneConfig:
    """The config one stream trains with: for flow, ``flow_epochs`` (when set) becomes ``epochs``,
    so the schedule, the logs, the resume state and the fingerprint all see the stream's own
    epoch count."""
    if modality == "flow" and cfg.flow_epochs:
        return dataclasses.replace(cfg, epochs=cfg.flow_epochs, flow_epochs=0)
    return dataclasses.replace(cfg, flow_epochs=0)


def run_finetune(cfg: FinetuneConfig, stop_after_epoch: int | None = None) -> list[StreamResult]:
    """Fine-tune every stream of ``cfg.modality`` (RGB first, so ``flow_init = "rgb"`` finds
    it). Works alone or under ``torchrun`` (DistributedDataParallel)."""
    import torch.distributed as dist

    from pipeline.manifest import load_manifest, manifest_hash

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    dist_ = init_distributed(device)
    try:
        records = load_manifest(cfg.manifest)
        manifest_sha = manifest_hash(cfg.manifest)
        order = sorted(cfg.modality, key=MODALITIES.index)
        return [finetune_stream(stream_config(cfg, m), m, records, manifest_sha, device, dist_,
                                stop_after_epoch) for m in order]
    finally:
        if dist_.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


__all__ = ["FinetuneConfig", "StreamResult", "run_finetune", "stream_config", "finetune_stream",
           "lr_at",
           "multiscale_crop_box", "cross_modality_conv1", "torchvision_to_mmaction",
           "init_weights", "confusion_matrix", "accuracy_metrics", "read_checkpoint_meta",
           "fingerprint", "run_dir", "ClipDataset", "FrameSource", "SegmentClassifier"]
