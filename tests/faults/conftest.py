"""Fixtures of the fault suites: one tiny finished pipeline, built once per session."""
from __future__ import annotations

import pytest

from fault_media import build_pipe


@pytest.fixture(scope="session")
def pipe(tmp_path_factory):
    """Tiny videos -> `cprclip extract` -> `cprclip train` (see fault_media.build_pipe). Tests
    break a private copy (fault_media.copy_pipe), never this one."""
    return build_pipe(tmp_path_factory.mktemp("pipe"))
