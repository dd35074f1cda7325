"""Optical flow: compute it, store it losslessly, read it back as (x, y) uint8 frames.

Quantisation (as mmaction2's denseflow and CPR-Coach): flow in pixels is clipped to
``[-bound, bound]`` (bound 20) and mapped linearly to 0..255, ``q = round((f + 20) * 255 / 40)``,
so 0 px/frame is ~127.5 and one level is 40/255 = 0.157 px. Models normalise with 128 / 128.

Storage:

- (a) CPR-Coach / mmaction2 rawframes: a folder with ``x_00001.jpg``, ``y_00001.jpg``, ... (one
  grey JPEG per component and flow frame, 1-based). Read by :class:`RawFrameFlowReader`.
- (b) a flow *video*, what ``cprclip flow`` writes (and lists in ``<flow_dir>/index.csv``,
  :func:`pipeline.manifest.write_flow_index`): R = x, G = y, B = 128, encoded with
  ``libx264rgb -qp 0`` (lossless RGB H.264 that decord decodes exactly), so a round trip changes
  no quantised value and the float flow by at most half a level. Its ``comment`` metadata holds
  the recipe (method, bound, short side). Read by :class:`VideoFlowReader` (decord by default).

A video of F frames has F - 1 flow frames (flow between frame i and i + 1).

Methods (:data:`FLOW_METHODS`): ``farneback`` (OpenCV, fast: the demo), ``tvl1``
(``cv2.optflow`` Dual TV-L1, as CPR-Coach: the real setting, ~5-10x slower) and ``dis`` (OpenCV
DIS, fastest, coarsest).
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from extract.decoders import (DecodeError, check_time_limit, open_video, short_side_size, upright,
                              video_stream)
from pipeline.log import first_line

log = logging.getLogger(__name__)

FLOW_BOUND = 20.0  # px/frame, as denseflow / CPR-Coach
RECIPE_TAG = "cprclip-flow"


def quantize_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Float flow (..., 2) in px -> uint8 (..., 2), clipped to +-bound."""
    q = np.round((np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound)))
    return q.astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """uint8 (..., 2) -> float32 px."""
    return q.astype(np.float32) * (2 * bound / 255.0) - bound


def _farneback(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    import cv2

    # OpenCV's example settings (pyramid 0.5, 3 levels, window 15, poly 5) with 2 iterations and
    # sigma 1.1 instead of 3 / 1.2: ~20% faster at the same look, which the demo budget needs.
    return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 2, 5, 1.1, 0)


@functools.cache
def _dis_impl():
    import cv2

    # DIS "fast" preset: ~10x faster than Farneback, for quick looks at large data.
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def _dis(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    return _dis_impl().calc(prev, nxt, None)


class _TVL1:
    """One Dual TV-L1 object per process (creating it is not free)."""

    _impl = None

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        import cv2

        if _TVL1._impl is None:
            if not hasattr(cv2, "optflow"):
                raise RuntimeError("TV-L1 needs cv2.optflow (opencv-contrib-python-headless)")
            _TVL1._impl = cv2.optflow.DualTVL1OpticalFlow_create()
        return _TVL1._impl.calc(prev, nxt, None)


# name -> f(prev_gray (H, W) uint8, next_gray (H, W) uint8) -> (H, W, 2) float32 px/frame.
FLOW_METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "farneback": _farneback,
    "tvl1": _TVL1(),
    "dis": _dis,
}


def get_method(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    try:
        return FLOW_METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown flow method {name!r}; valid methods are: {', '.join(FLOW_METHODS)}") from None


def recipe(method: str, bound: float, short_side: int | None) -> str:
    return f"{RECIPE_TAG} method={method} bound={bound:g} short_side={short_side or 0}"


def parse_recipe(text: str) -> dict[str, str]:
    """``recipe()`` string -> {"method": ..., "bound": ..., "short_side": ...}; {} if not ours."""
    parts = (text or "").split()
    if not parts or parts[0] != RECIPE_TAG:
        return {}
    return dict(p.split("=", 1) for p in parts[1:] if "=" in p)


def gray_frames(src: str | Path, short_side: int | None = None) -> Iterator[np.ndarray]:
    """Every frame of ``src`` as (H, W) uint8 grey, resized inside FFmpeg's swscale."""
    import av

    src = Path(src)
    if not src.is_file() or src.stat().st_size == 0:
        raise DecodeError(f"{src}: file missing or empty")
    try:
        c = av.open(str(src))
    except Exception as e:  # noqa: BLE001
        raise DecodeError(f"{src}: not a readable video ({first_line(e, 200)})") from None
    with c:
        s = video_stream(c, src)  # the stream the rgb decoders read, in a multi-stream file
        s.thread_type = "AUTO"
        w, h = short_side_size(s.codec_context.width, s.codec_context.height, short_side)
        try:
            for fr in c.decode(s):
                check_time_limit(src)  # the server's per-take limit; no limit elsewhere
                # Display orientation, as the rgb decoders return it (phones store portrait
                # video as landscape plus a rotation), so flow and rgb frames line up.
                yield upright(fr.to_ndarray(width=w, height=h, format="gray"), fr)
        except DecodeError:
            raise
        except Exception as e:  # noqa: BLE001
            raise DecodeError(f"{src}: decoding failed ({first_line(e, 200)})") from None


def _video_fps(src: Path) -> float:
    import av

    with av.open(str(src)) as c:
        s = video_stream(c, src)
        return float(s.average_rate or s.guessed_rate or 25)


class FlowVideoWriter:
    """Encodes (H, W, 2) uint8 flow frames into a lossless RGB H.264 file (in-process, PyAV);
    written to a hidden tmp file and renamed on :meth:`close`, so it is complete or absent."""

    def __init__(self, dst: str | Path, size: tuple[int, int], fps: float, comment: str = "",
                 preset: str = "ultrafast"):
        import av

        self.dst = Path(dst)
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dst.with_name(f".{self.dst.name}.{os.getpid()}.tmp")
        w, h = size
        self._blue = np.full((h, w, 1), 128, np.uint8)
        self._c = av.open(str(self.tmp), "w", format="mp4")
        self._c.metadata["comment"] = comment
        s = self._c.add_stream("libx264rgb", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, "rgb24"
        # qp 0 on RGB input = lossless; the preset only trades speed for size.
        s.options = {"qp": "0", "preset": preset, "g": "25"}
        s.thread_count = 1  # one process per video is the parallelism (flow_cli's pool)
        self._s = s
        self.frames = 0

    def write(self, q: np.ndarray) -> None:
        import av

        fr = av.VideoFrame.from_ndarray(np.concatenate([q, self._blue], axis=-1), format="rgb24")
        for pkt in self._s.encode(fr):
            self._c.mux(pkt)
        self.frames += 1

    def close(self) -> Path:
        try:
            for pkt in self._s.encode():
                self._c.mux(pkt)
            self._c.close()
        except BaseException:
            self.abort()
            raise
        os.replace(self.tmp, self.dst)
        return self.dst

    def abort(self) -> None:
        try:
            self._c.close()
        except Exception:  # noqa: BLE001 - already broken; just remove the partial file
            pass
        self.tmp.unlink(missing_ok=True)


def compute_flow_video(src: str | Path, dst: str | Path, method: str = "farneback",
                       short_side: int | None = 256, bound: float = FLOW_BOUND,
                       preset: str = "ultrafast") -> int:
    """Compute flow of every consecutive frame pair of ``src`` at ``short_side`` (None/0: the
    stored size) and write it as a lossless flow video ``dst`` (atomically: complete or absent).

    Returns the number of flow frames (frames - 1). Raises DecodeError for an unusable video.
    """
    import cv2

    src, dst = Path(src), Path(dst)
    fn = get_method(method)
    cv2.setNumThreads(1)  # one process per video is the parallelism (flow_cli's pool)
    writer = None
    prev = None
    try:
        for g in gray_frames(src, short_side):
            if prev is not None:
                q = quantize_flow(fn(prev, g), bound)
                if writer is None:
                    writer = FlowVideoWriter(dst, (g.shape[1], g.shape[0]), _video_fps(src),
                                             recipe(method, bound, short_side), preset)
                writer.write(q)
            prev = g
        if writer is None:
            raise DecodeError(f"{src}: fewer than 2 frames, no flow")
        writer.close()
        return writer.frames
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


class VideoFlowReader:
    """A flow video: ``get`` returns (N, H, W, 2) uint8 (x, y) via a normal decoder."""

    def __init__(self, path: str | Path, decoder: str = "decord", resize_short: int | None = None):
        self.path = Path(path)
        self._r = open_video(self.path, decoder, resize_short=resize_short)
        self.num_frames, self.fps, self.size = self._r.num_frames, self._r.fps, self._r.size

    def get(self, indices: np.ndarray, resize_short: int | None = None) -> np.ndarray:
        return np.ascontiguousarray(self._r.get(indices, resize_short)[..., :2])

    def close(self) -> None:
        self._r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RawFrameFlowReader:
    """A folder of ``x_%05d.jpg`` / ``y_%05d.jpg`` (1-based), as mmaction2 / CPR-Coach."""

    def __init__(self, path: str | Path, resize_short: int | None = None):
        import cv2

        self.path = Path(path)
        xs = sorted(self.path.glob("x_*.jpg"))
        if not xs:
            raise DecodeError(f"{self.path}: no x_%05d.jpg flow frames in this folder")
        self.num_frames = len(xs)
        first = cv2.imread(str(xs[0]), cv2.IMREAD_GRAYSCALE)
        if first is None:
            raise DecodeError(f"{xs[0]}: not a readable JPEG")
        self.size = (first.shape[1], first.shape[0])
        self.fps = 0.0

    def _read(self, name: str) -> np.ndarray:
        import cv2

        p = self.path / name
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DecodeError(f"{p}: missing or not a readable JPEG")
        return img

    def get(self, indices: np.ndarray, resize_short: int | None = None) -> np.ndarray:
        import cv2

        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_frames):
            raise DecodeError(f"{self.path}: flow frame index out of range ({self.num_frames} frames)")
        w, h = short_side_size(*self.size, resize_short)
        cache: dict[int, np.ndarray] = {}
        for i in sorted(set(idx.tolist())):
            xy = np.stack([self._read(f"x_{i + 1:05d}.jpg"), self._read(f"y_{i + 1:05d}.jpg")], -1)
            if (w, h) != (xy.shape[1], xy.shape[0]):
                xy = cv2.resize(xy, (w, h), interpolation=cv2.INTER_LINEAR)
            cache[i] = xy
        if not cache:
            return np.zeros((0, h, w, 2), np.uint8)
        return np.stack([cache[i] for i in idx.tolist()])

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def open_flow(path: str | Path, decoder: str = "decord", resize_short: int | None = None):
    """A flow reader for a rawframe folder or a flow video (``get`` -> (N, H, W, 2) uint8)."""
    path = Path(path)
    if path.is_dir():
        return RawFrameFlowReader(path, resize_short)
    return VideoFlowReader(path, decoder, resize_short)


def read_recipe(path: str | Path) -> str:
    """The ``comment`` recipe stored in a flow video by :func:`compute_flow_video` ('' if none)."""
    import av

    path = Path(path)
    if path.is_dir():
        return "rawframes"
    try:
        with av.open(str(path)) as c:
            return str(c.metadata.get("comment", ""))
    except Exception:  # noqa: BLE001
        return ""
