"""Video decoders behind one small interface: path and frame indices in, RGB frames out.

``open_video(path, decoder)`` returns a reader with ``num_frames``, ``fps``, ``size`` (W, H) and
``get(indices, resize_short) -> (N, H, W, 3) uint8``. Frames come back in the order of
``indices`` (duplicates allowed); each distinct frame is decoded once, and frames the sampler did
not ask for are never converted to RGB. ``resize_short`` resizes *inside the decoder* (decord's
``width``/``height``, PyAV's swscale ``reformat``), so full-resolution RGB is never materialised
on a 4K video.

The decoders, picked by name from :data:`DECODERS`:

- ``decord`` (default): fast random access; one reader per video, closed when done, because
  decord 0.6's memory grows on long 4K videos with long GOPs if a reader is kept around.
- ``pyav``: demuxes the packet index once (no decoding) to know each frame's pts and the key
  frames, then seeks to the key frame before a wanted frame only when that skips work. Memory is
  bounded by one decoded frame plus the frames asked for.
- ``torchcodec``: optional, imported lazily; it needs the system's FFmpeg shared libraries.
- ``auto`` (the extract default): decord for videos up to :data:`AUTO_DECORD_MAX_PIXELS` decoded
  pixels (30 s of 4K), PyAV beyond. decord 0.6's memory grows with the *length* of the video
  (measured on 4096x2160 H.264: +0.4 GiB at 1 minute, +1.7 GiB at 20 minutes, and it is not
  returned when the reader is closed), while PyAV stays at about +0.13 GiB at 20 minutes
  (docs/benchmarks.md, "Memory"). The choice depends only on the file's header, so a rerun picks
  the same decoder for the same video. Files with several video streams go to PyAV too.

Which stream: a file may hold several video streams; every decoder (and the flow stage) reads
the one :func:`video_stream` picks, the stream flagged *default* (else the first), and the
header probe logs which when there is a choice. decord cannot be told a stream, so a
:class:`DecordReader` hands such a file to PyAV, as it does a codec its FFmpeg lacks (AV1).

:func:`probe` reads the header facts (size, rate, frame count, duration, stream) without
decoding, for ``auto`` and for the server's limits; :func:`time_limit` lets a thread's decoding
loops stop after a deadline (the server's per-take limit).

Threads: each reader lets FFmpeg decode with about one thread per core (frame threads) unless
:func:`set_decode_threads` says otherwise. Decode workers that each handle their own video
(``workers >= 2``) set it to 1 through :func:`init_decode_worker`: the workers already fill the
cores, and frame threads on top only oversubscribe them (on 2 cores, 4K H.264: 9-16% less wall
time per video end to end; docs/benchmarks.md). Threads never change the decoded pixels.
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)


class DecodeError(RuntimeError):
    """A video that cannot be decoded; the message names the file and the problem."""


_DECODE_THREADS = 0  # threads per reader; 0 = the decoder's own choice (FFmpeg: ~one per core)


def set_decode_threads(n: int) -> None:
    """Threads each reader opened from now on in this process may use (0 = decoder's choice)."""
    global _DECODE_THREADS
    if n < 0:
        raise ValueError(f"decode threads must be >= 0, got {n}")
    _DECODE_THREADS = int(n)


def decode_threads() -> int:
    return _DECODE_THREADS


def init_decode_worker(worker_id: int, workers: int = 1) -> None:
    """``worker_init_fn`` of the DataLoaders that decode video (extract, finetune): one torch and
    one OpenCV thread, since the main process owns the cores for the model, and one decoder thread
    per reader when ``workers >= 2`` already decode side by side. Use through
    ``functools.partial(init_decode_worker, workers=N)``."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if workers >= 2:
        set_decode_threads(1)


def short_side_size(width: int, height: int, short: int | None) -> tuple[int, int]:
    """(W', H') with the short side equal to ``short`` and the aspect ratio kept (rounded).

    ``short=None`` keeps the size. Matches mmaction2's ``Resize(scale=(-1, short))``.
    """
    if not short:
        return width, height
    if width <= height:
        return short, max(1, int(height * short / width + 0.5))
    return max(1, int(width * short / height + 0.5)), short


class VideoReader(Protocol):
    """What every decoder returns. Use as a context manager so the file is closed."""

    num_frames: int
    fps: float
    size: tuple[int, int]  # (W, H) of the stored video

    def get(self, indices: np.ndarray, resize_short: int | None = None) -> np.ndarray:
        """Frames ``indices`` (N,) as (N, H, W, 3) uint8 RGB, in the order of ``indices``."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> "VideoReader": ...

    def __exit__(self, *exc) -> None: ...


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DecodeError(f"{path}: file not found")
    if not path.is_file():
        raise DecodeError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DecodeError(f"{path}: file is empty")


_DECORD_PREFIX = re.compile(r"^\[[0-9:]+\] \S+\.cc:\d+: (Error: )?")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    # decord prefixes its messages with "[hh:mm:ss] /path/to/source.cc:line: "; keep the problem.
    return _DECORD_PREFIX.sub("", text[0])[:200] if text else type(e).__name__


def _rotation(container, stream) -> int:
    """Display rotation (0, 90, 180, 270) of ``stream``, from its first decoded frame.

    Phones store portrait video as landscape plus a display matrix. decord applies it, PyAV
    does not; every reader here returns frames in display orientation, so both agree.
    """
    try:
        for fr in container.decode(stream):
            return int(round(getattr(fr, "rotation", 0) or 0)) % 360
    except Exception:  # noqa: BLE001 - a broken first frame: the decode itself will report it
        pass
    return 0


def upright(a: np.ndarray, frame) -> np.ndarray:
    """``a`` (an array made from PyAV ``frame``) turned into display orientation."""
    k = (int(round(getattr(frame, "rotation", 0) or 0)) // 90) % 4
    return np.ascontiguousarray(np.rot90(a, k)) if k else a


def _check_indices(path: Path, indices: np.ndarray, num_frames: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= num_frames):
        raise DecodeError(
            f"{path}: frame index {int(idx.min() if idx.min() < 0 else idx.max())} out of range "
            f"(video has {num_frames} frames)")
    return idx


@dataclass(frozen=True)
class VideoInfo:
    """What a file's container header says about the video stream every decoder reads.

    ``width`` x ``height`` is the display orientation; ``frames`` comes from the header (or
    duration x rate for containers without a count, e.g. Matroska), 0 when the header gives
    neither; ``duration_s`` likewise (0 when unknown). ``stream`` is the index of the video
    stream read (:func:`video_stream`), of ``video_streams`` in the file; ``codec`` its codec.
    """

    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    stream: int
    video_streams: int
    codec: str


def video_stream(container, path: str | Path = ""):
    """The video stream every decoder here reads: the first one flagged ``default``, else the
    first one; a cover picture (``attached_pic``) never. Raises DecodeError when there is none.

    One explicit rule, so that every decoder and the flow stage read the same stream of a file
    with several (decord cannot be told a stream: such files go to PyAV, see DecordReader).
    """
    import av

    flags = av.stream.Disposition
    streams = [s for s in container.streams.video if not s.disposition & flags.attached_pic]
    if not streams:
        raise DecodeError(f"{path}: no video stream")
    return next((s for s in streams if s.disposition & flags.default), streams[0])


def probe(path: str | Path) -> VideoInfo:
    """The header facts of ``path`` (and the first frame's rotation); nothing else is decoded.
    Memoised per file version, because ``auto``, the chosen reader and the server's limits all
    need it. Raises DecodeError for a file that is not a video."""
    p = Path(path)
    _check_file(p)
    st = p.stat()
    return _probe_cached(str(p), st.st_size, st.st_mtime_ns)


def _probe_pyav(path: Path) -> tuple[int, int, float, int]:
    """(W, H, fps, approximate frame count) of :func:`probe`."""
    i = probe(path)
    return i.width, i.height, i.fps, i.frames


@functools.lru_cache(maxsize=256)
def _probe_cached(path: str, size: int, mtime_ns: int) -> VideoInfo:
    import av

    try:
        with av.open(str(path)) as c:
            s = video_stream(c, path)
            rate = float(s.average_rate or s.guessed_rate or s.base_rate or 0.0)
            w, h = int(s.codec_context.width), int(s.codec_context.height)
            if s.duration is not None and s.time_base is not None:
                secs = float(s.duration * s.time_base)
            else:
                secs = float(c.duration or 0) / 1e6
            n = int(s.frames or 0)
            if n <= 0:  # Matroska/WebM headers carry no frame count: duration x rate
                n = int(round(secs * rate))
            if secs <= 0 and n > 0 and rate > 0:
                secs = n / rate
            cc = s.codec_context
            codec = str(getattr(cc.codec, "canonical_name", "") or cc.name)  # av1, not libdav1d
            total = len(c.streams.video)
            if total > 1:
                log.warning("%s: %d video streams; reading stream #%d (%s, %dx%d), the default "
                            "one, with every decoder", path, total, s.index, codec, w, h)
            if _rotation(c, s) in (90, 270):
                w, h = h, w
            return VideoInfo(w, h, rate, n, max(secs, 0.0), s.index, total, codec)
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - av raises many error types for a bad file
        raise DecodeError(f"{path}: not a readable video ({_first_line(e)})") from None


def count_frames(path: str | Path, limit: int) -> int:
    """Packets of the video stream of ``path``, counted by demuxing (no decoding) and stopping
    after ``limit + 1``: the number of frames a decoder will meet, which a header may not say
    (raw streams) or may understate (a Matroska duration). Raises DecodeError."""
    import av

    p = Path(path)
    _check_file(p)
    n = 0
    try:
        with av.open(str(p)) as c:
            for pkt in c.demux(video_stream(c, p)):
                if pkt.size:
                    n += 1
                    if n > limit:
                        break
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DecodeError(f"{p}: not a readable video ({_first_line(e)})") from None
    return n


# --------------------------------------------------------------------------------------------
# A time limit for the decoding done in one thread (the server's per-take limit)

_LIMIT = threading.local()


class DecodeTimeout(DecodeError):
    """Decoding stopped because the thread's :func:`time_limit` passed."""


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str = "the time limit") -> Iterator[None]:
    """Within this block, decoding loops in this thread (PyAV's frames and packets, the flow
    stage's frames) raise DecodeTimeout once ``seconds`` have passed. ``what`` names the limit
    in the message (e.g. a config key). A thread cannot be stopped from outside in Python, so
    the loops check between frames; one decord batch (bounded by the sampled frames) cannot be
    cut short."""
    old = getattr(_LIMIT, "value", None)
    _LIMIT.value = None if seconds is None else (time.monotonic() + float(seconds), seconds, what)
    try:
        yield
    finally:
        _LIMIT.value = old


def check_time_limit(path: str | Path) -> None:
    """Raise DecodeTimeout naming ``path`` when this thread's :func:`time_limit` has passed."""
    value = getattr(_LIMIT, "value", None)
    if value is not None and time.monotonic() > value[0]:
        raise DecodeTimeout(f"{path}: stopped after {value[1]:g} s ({value[2]})")


# Videos with more decoded pixels than this (frames x width x height) go to PyAV under "auto":
# 30 s of 4096x2160 at 25 fps, where decord 0.6 already holds ~0.2 GiB it does not give back.
AUTO_DECORD_MAX_PIXELS = 750 * 4096 * 2160


def auto_decoder(path: str | Path) -> str:
    """The decoder ``auto`` uses for ``path``: ``decord`` for short videos, ``pyav`` for long
    ones (see the module docstring) and for files with several video streams (decord cannot be
    told which to read). A codec decord lacks (AV1) goes to PyAV when decord fails to open it
    (:class:`DecordReader`). Raises DecodeError for a file that is not a video."""
    info = probe(path)
    if info.video_streams > 1:
        return "pyav"
    return "pyav" if info.frames * info.width * info.height > AUTO_DECORD_MAX_PIXELS else "decord"


class _Base:
    path: Path

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, num_frames={self.num_frames}, "
                f"fps={self.fps:.3f}, size={self.size})")


class DecordReader(_Base):
    """decord.VideoReader, re-opened with ``width``/``height`` when a resize is asked for.

    decord resizes only at open time, so the size is probed from the header (PyAV) first and the
    reader is opened once at the size of the first ``get`` (or of ``resize_short`` given here).

    Files decord cannot read as every other decoder does are handed to a PyAVReader, with a
    warning: several video streams (decord picks one by its own rule, not the default stream
    of :func:`video_stream`), and codecs its bundled FFmpeg lacks (AV1: "cannot find video
    stream with wanted index: -1").
    """

    def __init__(self, path: str | Path, resize_short: int | None = None,
                 num_threads: int | None = None):
        self.path = Path(path)
        info = probe(self.path)
        self.size = (info.width, info.height)
        self._num_threads = _DECODE_THREADS if num_threads is None else num_threads
        self._vr = None
        self._fallback: PyAVReader | None = None
        self._open_short: int | None = -1  # the resize_short the current reader was opened with
        if info.video_streams > 1:
            self._use_pyav(f"it has {info.video_streams} video streams and decord cannot be "
                           f"told to read #{info.stream}, the default")
            return
        try:
            self._open(resize_short)
        except DecodeError as e:
            if "cannot find video stream" not in str(e):
                raise
            # the header has a video stream (probe found it): decord lacks its decoder
            self._use_pyav(f"decord cannot decode its {info.codec} video")
            return
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps() or info.fps)
        if self.num_frames <= 0:
            raise DecodeError(f"{self.path}: video has no frames")

    def _use_pyav(self, why: str) -> None:
        log.warning("%s: %s; using pyav for it", self.path, why)
        self.close()
        self._fallback = PyAVReader(self.path, threads=self._num_threads)
        self.num_frames, self.fps = self._fallback.num_frames, self._fallback.fps

    def _open(self, resize_short: int | None) -> None:
        import decord

        if self._vr is not None and self._open_short == resize_short:
            return
        self.close()
        w, h = short_side_size(*self.size, resize_short)
        kw = dict(width=w, height=h) if resize_short else {}
        try:
            self._vr = decord.VideoReader(str(self.path), ctx=decord.cpu(0),
                                          num_threads=self._num_threads, **kw)
        except Exception as e:  # noqa: BLE001 - decord raises DECORDError / RuntimeError
            raise DecodeError(f"{self.path}: decord cannot open it ({_first_line(e)})") from None
        self._open_short = resize_short

    def get(self, indices: np.ndarray, resize_short: int | None = None) -> np.ndarray:
        idx = _check_indices(self.path, indices, self.num_frames)
        if idx.size == 0:
            w, h = short_side_size(*self.size, resize_short)
            return np.zeros((0, h, w, 3), np.uint8)
        if self._fallback is not None:
            return self._fallback.get(idx, resize_short)
        self._open(resize_short)
        # Decode each distinct frame once, in increasing order (cheapest seek pattern).
        uniq, inverse = np.unique(idx, return_inverse=True)
        try:
            frames = self._vr.get_batch(uniq.tolist()).asnumpy()
        except Exception as e:  # noqa: BLE001
            if "DECORDArrayCopyFromTo" in str(e):
                # decord 0.6 mis-sizes some planar-RGB frames (e.g. 48 px wide gbrp); PyAV
                # decodes them exactly, so use it for this file.
                self._use_pyav(f"decord cannot copy this frame format ({_first_line(e)})")
                return self._fallback.get(idx, resize_short)
            raise DecodeError(f"{self.path}: decoding failed ({_first_line(e)})") from None
        if len(frames) != len(uniq):
            raise DecodeError(f"{self.path}: asked for {len(uniq)} frames, got {len(frames)}")
        return np.ascontiguousarray(frames[inverse])

    def close(self) -> None:
        if self._vr is not None:
            vr, self._vr = self._vr, None
            del vr  # decord frees its decoder and frame buffers in __del__
        if getattr(self, "_fallback", None) is not None:
            self._fallback.close()


class PyAVReader(_Base):
    """PyAV (FFmpeg) with a packet index for exact frame numbers and key-frame seeks."""

    def __init__(self, path: str | Path, resize_short: int | None = None,
                 threads: int | None = None):
        import av

        self.path = Path(path)
        _check_file(self.path)
        self.corrupt_frames: list[int] = []  # indices FFmpeg flagged corrupt while decoding
        try:
            self._c = av.open(str(self.path))
        except Exception as e:  # noqa: BLE001
            raise DecodeError(f"{self.path}: not a readable video ({_first_line(e)})") from None
        try:
            s = video_stream(self._c, self.path)
            self._s = s
            self.size = (int(s.codec_context.width), int(s.codec_context.height))
            rate = s.average_rate or s.guessed_rate or s.base_rate
            self.fps = float(rate or 0.0)
            self._stored = self.size  # (W, H) as coded; frames are rotated after scaling
            self.size = _probe_pyav(self.path)[:2]
            # Demux once (cheap: no decoding) to number frames by presentation order.
            pts, keys = [], []
            for k, pkt in enumerate(self._c.demux(s)):
                if k % 256 == 0:
                    check_time_limit(self.path)
                if pkt.size == 0 or pkt.pts is None:
                    continue
                pts.append(int(pkt.pts))
                if pkt.is_keyframe:
                    keys.append(int(pkt.pts))
            order = sorted(pts)
            self._pts = order
            self._index = {p: i for i, p in enumerate(order)}
            self._keys = sorted(self._index[k] for k in keys if k in self._index)
            self.num_frames = len(order)
            if self.num_frames == 0:
                raise DecodeError(f"{self.path}: video has no frames")
            threads = _DECODE_THREADS if threads is None else threads
            if threads != 1:
                s.thread_type = "AUTO"  # frame threads: ~1.5-2x on 2 cores for H.264
                s.thread_count = threads  # 0: FFmpeg picks (one per core)
        except DecodeError:
            self.close()
            raise
        except Exception as e:  # noqa: BLE001
            self.close()
            raise DecodeError(f"{self.path}: cannot index video ({_first_line(e)})") from None

    def _frames_from(self, seek_frame: int):
        """Decoded frames (index, av.VideoFrame) from key frame ``seek_frame`` on."""
        # Always seek: the packet index in __init__ left the demuxer at the end of the file.
        self._c.seek(self._pts[seek_frame], stream=self._s, backward=True, any_frame=False)
        for pkt in self._c.demux(self._s):
            for fr in pkt.decode():
                check_time_limit(self.path)
                if fr.pts is None:
                    continue
                i = self._index.get(int(fr.pts))
                if i is None:
                    continue
                if getattr(fr, "is_corrupt", False):
                    if not self.corrupt_frames:  # FFmpeg conceals damage: say so, once per file
                        log.warning("%s: frame %d is corrupt (FFmpeg concealed damaged data); "
                                    "frames decoded from it may be wrong", self.path, i)
                    self.corrupt_frames.append(i)
                yield i, fr

    def get(self, indices: np.ndarray, resize_short: int | None = None) -> np.ndarray:
        idx = _check_indices(self.path, indices, self.num_frames)
        w, h = short_side_size(*self.size, resize_short)
        if idx.size == 0:
            return np.zeros((0, h, w, 3), np.uint8)
        sw, sh = short_side_size(*self._stored, resize_short)  # the short side is the same
        wanted = sorted(set(idx.tolist()))
        got: dict[int, np.ndarray] = {}
        it = None
        cur = -1  # index of the last decoded frame
        try:
            for target in wanted:
                # Seek only when a key frame lies after what was decoded and not after the target.
                k = bisect.bisect_right(self._keys, target) - 1
                key = self._keys[k] if k >= 0 else 0
                if it is None or key > cur + 1:
                    it = self._frames_from(key)
                for i, fr in it:
                    cur = i
                    if i == target:
                        got[i] = upright(fr.to_ndarray(width=sw, height=sh, format="rgb24",
                                                       interpolation="BICUBIC"), fr)
                        break
                    if i > target:  # an irregular stream; fall back to a sequential pass
                        break
                if target not in got:
                    raise DecodeError(f"{self.path}: frame {target} could not be decoded "
                                      f"(stream ended at frame {cur}; truncated file?)")
        except DecodeError:
            raise
        except Exception as e:  # noqa: BLE001
            raise DecodeError(f"{self.path}: decoding failed ({_first_line(e)})") from None
        return np.stack([got[i] for i in idx.tolist()])

    def close(self) -> None:
        c = getattr(self, "_c", None)
        if c is not None:
            self._c = None
            c.close()


class TorchCodecReader(_Base):
    """torchcodec's VideoDecoder (exact seek mode); resizes after decoding with OpenCV."""

    def __init__(self, path: str | Path, resize_short: int | None = None,
                 threads: int | None = None):
        self.path = Path(path)
        _check_file(self.path)
        threads = _DECODE_THREADS if threads is None else threads
        try:
            from torchcodec.decoders import VideoDecoder
        except Exception as e:  # noqa: BLE001 - ImportError or a missing FFmpeg shared library
            raise DecodeError(
                f"decoder 'torchcodec' is not usable here ({_first_line(e)}); it needs "
                f"'pip install torchcodec' and the system's FFmpeg libraries. Available: "
                f"{', '.join(available_decoders())}") from None
        stream = probe(self.path).stream  # the default stream, as the other decoders read
        try:
            self._d = VideoDecoder(str(self.path), stream_index=stream, dimension_order="NHWC",
                                   seek_mode="exact", num_ffmpeg_threads=threads)
        except Exception as e:  # noqa: BLE001
            raise DecodeError(f"{self.path}: torchcodec cannot open it ({_first_line(e)})") from None
        md = self._d.metadata
        self.num_frames = int(md.num_frames or 0)
        self.fps = float(md.average_fps or 0.0)
        self.size = (int(md.width), int(md.height))
        if self.num_frames <= 0:
            raise DecodeError(f"{self.path}: video has no frames")

    def get(self, indices: np.ndarray, resize_short: int | None = None) -> np.ndarray:
        import cv2

        idx = _check_indices(self.path, indices, self.num_frames)
        w, h = short_side_size(*self.size, resize_short)
        if idx.size == 0:
            return np.zeros((0, h, w, 3), np.uint8)
        uniq, inverse = np.unique(idx, return_inverse=True)
        try:
            frames = self._d.get_frames_at(indices=uniq.tolist()).data.numpy()
        except Exception as e:  # noqa: BLE001
            raise DecodeError(f"{self.path}: decoding failed ({_first_line(e)})") from None
        if resize_short:
            frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
        return np.ascontiguousarray(frames[inverse])

    def close(self) -> None:
        self._d = None


# name -> reader class (called as cls(path, resize_short=None)). A visible table.
DECODERS: dict[str, Callable[..., VideoReader]] = {
    "decord": DecordReader,
    "pyav": PyAVReader,
    "torchcodec": TorchCodecReader,
}
# A config's ``decoder`` choice: a name above, or ``auto`` (:func:`auto_decoder`).
DecoderChoice = Literal["auto", "decord", "pyav", "torchcodec"]


def available_decoders() -> list[str]:
    """Decoders that work on this machine: the package imports (and, for torchcodec, finds the
    system's FFmpeg shared libraries, which it loads on import of its decoders)."""
    import importlib.util

    mods = {"decord": "decord", "pyav": "av", "torchcodec": "torchcodec"}
    out = [n for n in DECODERS if importlib.util.find_spec(mods[n]) is not None]
    if "torchcodec" in out:
        try:
            from torchcodec.decoders import VideoDecoder  # noqa: F401
        except Exception:  # noqa: BLE001 - OSError/RuntimeError when libav* is missing
            out.remove("torchcodec")
    return out


def open_video(path: str | Path, decoder: str = "decord",
               resize_short: int | None = None) -> VideoReader:
    """Open ``path`` with the named decoder (or ``auto``: see :func:`auto_decoder`).
    ``resize_short`` (optional) lets decord open once at the output size instead of re-opening on
    the first ``get``. Raises DecodeError."""
    if decoder == "auto":
        decoder = auto_decoder(path)
    try:
        cls = DECODERS[decoder]
    except KeyError:
        raise DecodeError(
            f"unknown decoder {decoder!r}; valid decoders are: auto, {', '.join(DECODERS)}"
        ) from None
    return cls(path, resize_short=resize_short)


def read_frames(path: str | Path, indices: np.ndarray, decoder: str = "decord",
                resize_short: int | None = None) -> np.ndarray:
    """Frames ``indices`` (N,) of ``path`` as (N, H, W, 3) uint8 RGB; the file is closed after."""
    with open_video(path, decoder, resize_short=resize_short) as r:
        return r.get(indices, resize_short=resize_short)
