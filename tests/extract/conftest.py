"""Fixtures for the extract tests."""
from __future__ import annotations

import pytest
import torch

from extract_helpers import known_frames, write_video


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)  # 2 shared cores: keep tests from fighting over them
    monkeypatch.setenv("CPRCLIP_NO_PROGRESS", "1")


@pytest.fixture
def lossless_video(tmp_path):
    """(path, frames): a libx264rgb -qp 0 mp4 whose decoded frames must equal ``frames``."""
    frames = known_frames()
    return write_video(tmp_path / "fixture.mp4", frames), frames
