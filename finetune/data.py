"""Training clips: the single-class videos, their frames (cached once), crops and order.

Per video, T segments with a random frame offset inside each (``extract.sampling`` train mode;
flow clips are 5 stacked x/y pairs), short side resized to ``short_side``, mmaction2's
``MultiScaleCrop`` resized to ``crop_size``, optional horizontal flip. Shapes: T segments,
S crop size, C input channels (3 rgb, 10 flow).

Randomness never depends on the process layout: the epoch permutation comes from
``seed + epoch`` (:class:`EpochSampler`), each sample's augmentation from
``(seed, epoch, index)``. So a resumed run, a run with more data-loader workers and a
``torchrun`` run with the same global ``batch_size`` see the same batches.
"""
from __future__ import annotations

import hashlib
import io
import logging
import re
from pathlib import Path

import numpy as np
import torch

from finetune.config import FinetuneConfig
from pipeline.atomic import write_atomic

log = logging.getLogger(__name__)


def single_class_records(records: list, split: str) -> list:
    """The single-class videos of ``split``, in manifest order (every view is a sample)."""
    return [r for r in records if r.split == split and r.is_single]


# --------------------------------------------------------------------------------------------
# Crops (pure numpy)


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


# --------------------------------------------------------------------------------------------
# Frames, clips, order


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
    channels in x1, y1, ..., x5, y5 order; for a clip backbone (I3D) the L frames of each
    segment stacked in frame order, 3L or 2L.
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
        from extract.backbones import get_spec
        from extract.sampling import segment_indices
        from extract.transforms import center_crop, stack_clip

        epoch, i = key if isinstance(key, tuple) else (0, key)
        cfg, rec = self.cfg, self.records[i]
        T, L = cfg.segments, get_spec(cfg.backbone).clip_len(self.modality)
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
        clip = stack_clip(frames[None], L)[0]  # (T, S, S, c*L): 3 rgb, 10 flow, 3L / 2L a clip
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
