"""Shared settings for the fault-injection suite (issue 7); helpers live in fault_media.py
(a unique module name: several test folders have a conftest.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
