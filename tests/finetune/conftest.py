"""Fixtures for the finetune tests: a tiny generated dataset."""
from __future__ import annotations

import pytest

from finetune_helpers import make_dataset


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory):
    """4 classes x (2 train + 1 val) views of 16-frame 64x48 videos, with flow videos."""
    return make_dataset(tmp_path_factory.mktemp("finetune_data"), flow=True)
