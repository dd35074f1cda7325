"""Fixtures for the frames tests: a tiny generated dataset."""
from __future__ import annotations

import pytest

from frames_helpers import make_manifest


@pytest.fixture(scope="session")
def frames_manifest(tmp_path_factory):
    """4 classes x (3 train videos of p1 + 1 val video of p2), 12 frames of 64x48 each, and one
    composite test video."""
    return make_manifest(tmp_path_factory.mktemp("frames_videos"))
