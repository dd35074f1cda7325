"""Write a PNG montage of synthetic clips: one row per label set, one column per view.

    .venv/bin/python docs/figures/synth_montage.py docs/img/synthetic_views.png

Each cell is the frame of deepest compression of a clip rendered in memory by
``synth.render`` (no files, no ffmpeg). The image goes through a 96-colour palette to stay
small. The figure is shown in docs/synthetic.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

# Run as a script from anywhere: the repository root holds the packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.taxonomy import CLASSES  # noqa: E402
from synth.render import (derive_seed, iter_frames, sample_motion,  # noqa: E402
                          sample_participant)

DEFAULT_ROWS = ((0,), (1,), (2,), (3,), (4,), (5,), (6,), (7,), (8,), (9,), (4, 6, 11, 12))


def deepest_frame(labels: tuple[int, ...], person: int, view: int, seed: int,
                  resolution: tuple[int, int], frames: int) -> np.ndarray:
    """(H, W, 3) uint8: the frame where the chest is pressed deepest."""
    motion = sample_motion(labels, sample_participant(person), seed, frames, 25.0)
    k = int(np.argmax(motion.compress + motion.jump))
    for i, frame in enumerate(iter_frames(labels, person, view, seed, resolution, k + 1)):
        if i == k:
            return frame
    raise AssertionError("unreachable")


def montage(rows=DEFAULT_ROWS, resolution=(160, 120), frames=30, views=(1, 2, 3, 4)) -> np.ndarray:
    """(rows*H, views*W, 3) uint8 montage; people cycle through p1..p6 row by row."""
    out = []
    for r, labels in enumerate(rows):
        person = r % 6
        cells = []
        for v in views:
            img = deepest_frame(labels, person, v, derive_seed("montage", labels), resolution,
                                frames).copy()
            if v == views[0]:
                name = " + ".join(CLASSES[k] for k in labels) if len(labels) > 1 else \
                    f"{labels[0]} {CLASSES[labels[0]]}"
                cv2.rectangle(img, (0, 0), (img.shape[1] - 1, 14), (20, 20, 20), -1)
                cv2.putText(img, name[:36], (3, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.32,
                            (255, 255, 255), 1, cv2.LINE_AA)
            cells.append(img)
        out.append(np.concatenate(cells, 1))
    return np.concatenate(out, 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--colors", type=int, default=96, help="palette size (smaller file)")
    args = p.parse_args(argv)
    from PIL import Image

    img = Image.fromarray(montage()).quantize(colors=args.colors, dither=Image.Dither.NONE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
