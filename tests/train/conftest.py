"""Fixtures of the train tests: the tiny feature files of tiny_train_features.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tiny_train_features import make_features


@pytest.fixture(scope="session")
def tiny_features(tmp_path_factory) -> Path:
    """features_dir holding tiny/toy-rgb-4seg.h5 and tiny/toy-flow-4seg.h5 (D = 16 and 8)."""
    return make_features(tmp_path_factory.mktemp("features"))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
