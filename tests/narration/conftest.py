"""Fixtures for the narration tests: a tiny generated dataset."""
from __future__ import annotations

import pytest

from narration_helpers import make_dataset


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The paths of the tiny dataset (narration_helpers.make_dataset) as [narration] keys."""
    return make_dataset(tmp_path_factory.mktemp("narration"))
