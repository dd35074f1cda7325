"""Shared helpers for the fault-injection suite (issue 7): bad inputs made on the fly."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def write_config(root: Path, manifest: Path | str = "manifest.csv") -> Path:
    """A config whose [common] points everything into ``root``."""
    cfg = root / "fault.toml"
    cfg.write_text(f'[common]\ndataset = "tiny"\nmanifest = "{manifest}"\n'
                   f'features_dir = "{root / "features"}"\nruns_dir = "{root / "runs"}"\nseed = 0\n')
    return cfg


# Small, fast extraction settings: random-init tsn_r18 at 32 px, 4 segments, no workers.
TINY_EXTRACT = ["backbone=tsn_r18", "segments=4", "short_side=32", "crop_size=32",
                "checkpoint=none", "workers=0", "device=cpu", "batch_videos=4", "min_frames=4"]


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]
