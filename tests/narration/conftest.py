"""Fixtures for the narration tests: one thread, no progress bars, a tiny generated dataset."""
from __future__ import annotations

import pytest
import torch

from narration_helpers import make_dataset


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)  # 2 shared cores: keep tests from fighting over them
    monkeypatch.setenv("CPRCLIP_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The paths of the tiny dataset (narration_helpers.make_dataset) as [narration] keys."""
    return make_dataset(tmp_path_factory.mktemp("narration"))
