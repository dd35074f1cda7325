"""Fixtures for the finetune tests: one thread, no progress bars, a tiny generated dataset."""
from __future__ import annotations

import pytest
import torch

from finetune_helpers import make_dataset


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)  # 2 shared cores: keep tests from fighting over them
    monkeypatch.setenv("CPRCLIP_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory):
    """4 classes x (2 train + 1 val) views of 16-frame 64x48 videos, with flow videos."""
    return make_dataset(tmp_path_factory.mktemp("finetune_data"), flow=True)
