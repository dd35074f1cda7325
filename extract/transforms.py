"""Spatial views and normalisation for TSN/TSM inputs.

Shapes: frames are (N, H, W, C) uint8 as decoded (C = 3 rgb, 2 flow x/y). The resize to the
short side normally happens inside the decoder (extract/decoders.py); :func:`resize_short`
does it here for frames that come from elsewhere (rawframe flow JPEGs). Crop functions return
(K, N, h, w, C): K spatial views of every frame, in this order:

- ``center``: K = 1, mmaction2's ``CenterCrop`` (offset ``(size - crop) // 2``).
- ``three``: K = 3, mmaction2's ``ThreeCrop`` order (left/top, right/bottom, middle) along the
  long side; the crop is ``crop_size`` square (mmaction2 uses crop = short side; we allow less
  and centre it on the short side).
- ``ten``: K = 10, mmaction2's ``TenCrop``: 4 corners and centre, each followed by its
  horizontal flip (flow x channels are inverted on flip: a mirrored motion points the other way).
- ``multiscale``: K = 3, centred squares of (1, 0.875, 0.75) x the short side, each resized to
  ``crop_size`` (the test-time form of mmaction2's ``MultiScaleCrop`` scales).

:func:`normalize` turns (..., C) uint8 into float32 ``(x - mean) / std`` on the 0-255 scale:
RGB mean (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375); flow 128 / 128.
"""
from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

from extract.decoders import short_side_size

# Spatial views per video at test time (mmaction2's CenterCrop / ThreeCrop / TenCrop, and
# MultiScaleCrop's scales as three centre crops); a config's ``crop`` choice.
Crop = Literal["center", "three", "ten", "multiscale"]
CROPS: tuple[str, ...] = get_args(Crop)
MULTISCALE = (1.0, 0.875, 0.75)
NUM_VIEWS = {"center": 1, "three": 3, "ten": 10, "multiscale": 3}


def resize_short(frames: np.ndarray, short: int | None) -> np.ndarray:
    """(N, H, W, C) -> (N, H', W', C) with the short side = ``short`` (bilinear, OpenCV)."""
    import cv2

    if not short:
        return frames
    n, h, w, c = frames.shape
    nw, nh = short_side_size(w, h, short)
    if (nw, nh) == (w, h):
        return frames
    out = np.empty((n, nh, nw, c), np.uint8)
    for i in range(n):
        r = cv2.resize(frames[i], (nw, nh), interpolation=cv2.INTER_LINEAR)
        out[i] = r.reshape(nh, nw, c)
    return out


def _check(frames: np.ndarray, crop: int) -> tuple[int, int]:
    if frames.ndim != 4:
        raise ValueError(f"frames must be (N, H, W, C), got {frames.shape}")
    h, w = frames.shape[1:3]
    if crop > h or crop > w:
        raise ValueError(f"crop {crop} is larger than the frame {w}x{h}; raise short_side")
    return h, w


def center_crop(frames: np.ndarray, crop: int) -> np.ndarray:
    """(N, H, W, C) -> (1, N, crop, crop, C)."""
    h, w = _check(frames, crop)
    top, left = (h - crop) // 2, (w - crop) // 2
    return frames[None, :, top:top + crop, left:left + crop]


def three_crop(frames: np.ndarray, crop: int) -> np.ndarray:
    """(N, H, W, C) -> (3, N, crop, crop, C): start, end, middle of the long side."""
    h, w = _check(frames, crop)
    if w >= h:
        top, step = (h - crop) // 2, (w - crop) // 2
        offs = [(top, 0), (top, 2 * step), (top, step)]
    else:
        left, step = (w - crop) // 2, (h - crop) // 2
        offs = [(0, left), (2 * step, left), (step, left)]
    return np.stack([frames[:, y:y + crop, x:x + crop] for y, x in offs])


def ten_crop(frames: np.ndarray, crop: int, invert_channels: tuple[int, ...] = ()) -> np.ndarray:
    """(N, H, W, C) -> (10, N, crop, crop, C): 4 corners + centre, each then flipped.

    ``invert_channels``: channels replaced by 255 - v in flipped views (flow x).
    """
    h, w = _check(frames, crop)
    ws, hs = (w - crop) // 4, (h - crop) // 4
    offs = [(0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws)]
    views = []
    for y, x in offs:
        c = frames[:, y:y + crop, x:x + crop]
        f = c[:, :, ::-1].copy()
        for ch in invert_channels:
            f[..., ch] = 255 - f[..., ch]
        views += [c, f]
    return np.stack(views)


def multiscale_crops(frames: np.ndarray, crop: int,
                     scales: tuple[float, ...] = MULTISCALE) -> np.ndarray:
    """(N, H, W, C) -> (len(scales), N, crop, crop, C): centred squares of scale x short side,
    each resized to ``crop``."""
    import cv2

    h, w = frames.shape[1:3]
    short = min(h, w)
    views = []
    for s in scales:
        side = max(1, int(round(short * s)))
        sq = center_crop(frames, side)[0]
        if side != crop:
            interp = cv2.INTER_AREA if side > crop else cv2.INTER_LINEAR
            sq = np.stack([cv2.resize(f, (crop, crop), interpolation=interp)
                           .reshape(crop, crop, -1) for f in sq])
        views.append(sq)
    return np.stack(views)


def spatial_views(frames: np.ndarray, crop: str, crop_size: int,
                  invert_on_flip: tuple[int, ...] = ()) -> np.ndarray:
    """(N, H, W, C) -> (K, N, crop_size, crop_size, C) for crop in :data:`CROPS`."""
    if crop == "center":
        return center_crop(frames, crop_size)
    if crop == "three":
        return three_crop(frames, crop_size)
    if crop == "ten":
        return ten_crop(frames, crop_size, invert_on_flip)
    if crop == "multiscale":
        return multiscale_crops(frames, crop_size)
    raise ValueError(f"unknown crop {crop!r}; valid crops are: {', '.join(CROPS)}")


def stack_clip(views: np.ndarray, clip_len: int) -> np.ndarray:
    """(K, T*L, h, w, c) -> (K, T, h, w, c*L): the L frames of each segment on the channel
    axis in frame order (x1, y1, x2, y2, ... for flow, mmaction2's NCHW_Flow; r1, g1, b1, r2,
    ... for an RGB clip of a 3D backbone, extract/i3d.py)."""
    k, n, h, w, c = views.shape
    if n % clip_len:
        raise ValueError(f"views must be (K, T*{clip_len}, h, w, c), got {views.shape}")
    t = n // clip_len
    v = views.reshape(k, t, clip_len, h, w, c).transpose(0, 1, 3, 4, 2, 5)
    return np.ascontiguousarray(v.reshape(k, t, h, w, c * clip_len))


def stack_flow(views: np.ndarray, clip_len: int) -> np.ndarray:
    """Flow (K, T*L, h, w, 2) -> (K, T, h, w, 2L), channels x1, y1, x2, y2, ... (NCHW_Flow)."""
    if views.ndim != 5 or views.shape[-1] != 2:
        raise ValueError(f"flow views must be (K, T*{clip_len}, h, w, 2), got {views.shape}")
    return stack_clip(views, clip_len)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(..., C) uint8 or float on the 0-255 scale -> float32 ``(x - mean) / std``.

    ``mean``/``std`` have C entries, or fewer that repeat (2 flow values for 10 channels).
    """
    c = x.shape[-1]
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    if m.numel() != c:
        m, s = m.repeat(c // m.numel()), s.repeat(c // s.numel())
    return (x.float() - m) / s


def to_model_input(views: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, K, T, h, w, C) uint8 -> (B*K*T, C, h, w) float32 normalised, frames of one
    (video, view) consecutive in segment order (what TSM's shift expects)."""
    b, k, t, h, w, c = views.shape
    x = normalize(views.reshape(b * k * t, h, w, c), mean, std)
    return x.permute(0, 3, 1, 2)
