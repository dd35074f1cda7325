"""TSN / TSM segment sampling: frame counts in, frame indices out (pure numpy).

A video of ``num_frames`` frames is cut into T equal segments; each segment gives one clip of
``clip_len`` consecutive frames (1 for RGB, 5 for flow: 5 stacked x/y pairs). TSM uses the same
sampler with T = 8 (its clips are TSN's "1x1x8").

- ``mode="test"``: the clip starts at the centre of its segment (TSN's test sampling and
  mmaction2's ``SampleFrames(test_mode=True)`` for ``clip_len=1``): with
  ``avg = (num_frames - clip_len + 1) / T``, start ``t`` is ``int(t * avg + avg / 2)``.
  Deterministic. (For ``clip_len > 1`` mmaction2 1.x switches to an evenly-spaced 3D sampler;
  we keep TSN's segment centres, which is what a 2D flow stream was trained with.)
- ``mode="train"``: mmaction2's training sampler (``keep_tail_frames=False``): a random start
  inside each segment, drawn from ``rng``.

Short videos: when ``num_frames < clip_len`` every start is 0; indices past the end wrap around
(mmaction2's ``out_of_bound_opt="loop"``), so the result always has shape (T, clip_len) and
every index is a valid frame.
"""
from __future__ import annotations

import numpy as np

MODES = ("test", "train")


def _test_starts(num_frames: int, num_segments: int, clip_len: int) -> np.ndarray:
    avg = (num_frames - clip_len + 1) / float(num_segments)
    if num_frames > clip_len - 1:
        return (np.arange(num_segments) * avg + avg / 2.0).astype(np.int64)
    return np.zeros(num_segments, dtype=np.int64)


def _train_starts(num_frames: int, num_segments: int, clip_len: int,
                  rng: np.random.Generator) -> np.ndarray:
    avg = (num_frames - clip_len + 1) // num_segments
    if avg > 0:  # a random offset inside each of T equal segments
        return np.arange(num_segments) * avg + rng.integers(0, avg, size=num_segments)
    if num_frames > max(num_segments, clip_len):  # fewer frames per segment than 1: sorted draws
        return np.sort(rng.integers(0, num_frames - clip_len + 1, size=num_segments))
    if avg == 0:  # spread what there is evenly
        ratio = (num_frames - clip_len + 1.0) / num_segments
        return np.around(np.arange(num_segments) * ratio).astype(np.int64)
    return np.zeros(num_segments, dtype=np.int64)


def segment_indices(num_frames: int, num_segments: int, clip_len: int = 1, mode: str = "test",
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices (T, clip_len) int64 for a video of ``num_frames`` frames.

    ``rng`` is used only in train mode (a fresh default generator when None).
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if num_segments <= 0 or clip_len <= 0:
        raise ValueError(f"num_segments and clip_len must be positive, got {num_segments}, {clip_len}")
    if mode == "test":
        starts = _test_starts(num_frames, num_segments, clip_len)
    elif mode == "train":
        starts = _train_starts(num_frames, num_segments, clip_len,
                               rng if rng is not None else np.random.default_rng())
    else:
        raise ValueError(f"unknown sampling mode {mode!r}; valid modes are: {', '.join(MODES)}")
    idx = starts.astype(np.int64)[:, None] + np.arange(clip_len, dtype=np.int64)[None, :]
    return np.mod(idx, num_frames)


def describe(num_segments: int, clip_len: int, mode: str = "test") -> str:
    """The sampling recipe as stored in feature-file attributes."""
    return f"tsn-{mode} segments={num_segments} clip_len={clip_len} out_of_bound=loop"
