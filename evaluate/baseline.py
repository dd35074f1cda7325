"""The hand-made baseline every learnt model must beat: a logistic regression on frame
statistics (where and how much the image changes, and at what temporal frequency).

Issue 14 measured it on the demo: it matched the first fine-tuned models. It stays here as the
floor of the results tables (``bench/framestats_baseline.py`` scores it on a manifest's test
split exactly as ``cprclip eval`` scores the models), and ``tests/synth/test_learnable.py``
uses the same statistics to show the synthetic errors are learnable from pixels at all.
"""
from __future__ import annotations

import cv2
import numpy as np

GRID = (12, 9)       # coarse cells of the motion and variation maps (width, height)
SPECTRUM_BINS = 24   # low temporal frequencies of the global motion signal: the compression rate
SIZE = (64, 48)      # frames are shrunk to this before the statistics


def frame_statistics(clip: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 frames -> (2 * 12 * 9 + 24,) features, each block normalised to sum 1:
    the mean absolute frame difference per cell (where the motion is), the per-pixel standard
    deviation over time per cell (what varies), and the spectrum of the mean motion per frame
    (how fast it repeats)."""
    g = clip.astype(np.float32).mean(-1)                       # (N, H, W) grey
    d = np.abs(np.diff(g, axis=0))                             # (N-1, H, W) motion
    energy = cv2.resize(d.mean(0), GRID, interpolation=cv2.INTER_AREA).ravel()
    spread = cv2.resize(g.std(0), GRID, interpolation=cv2.INTER_AREA).ravel()
    s = d.reshape(len(d), -1).mean(1)
    spectrum = np.abs(np.fft.rfft(s - s.mean(), n=64))[1:1 + SPECTRUM_BINS]
    return np.concatenate([v / (v.sum() + 1e-6) for v in (energy, spread, spectrum)])


def read_small_frames(path: str, size: tuple[int, int] = SIZE, max_frames: int = 400) -> np.ndarray:
    """Every frame of a video (up to ``max_frames``), shrunk to ``size``: (N, h, w, 3) uint8 RGB.
    Raises ValueError naming the file when it has fewer than 2 readable frames."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while len(frames) < max_frames:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(f, size, interpolation=cv2.INTER_AREA)[..., ::-1])
    finally:
        cap.release()
    if len(frames) < 2:
        raise ValueError(f"{path}: fewer than 2 readable frames")
    return np.stack(frames)


def fit_baseline(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """A standardised multinomial logistic regression on (N, F) statistics and (N,) class ids."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000,
                                                             random_state=seed))
    return clf.fit(x, y)
