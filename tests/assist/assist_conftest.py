"""This folder's conftest as a uniquely named module.

``from conftest import X`` inside a test gets whichever folder's conftest pytest imported last
when the whole suite runs (tests/evaluate has one too), so tests import from here instead.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "tests_assist_conftest"


def load():
    mod = sys.modules.get(_NAME)
    if mod is None:
        spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("conftest.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = mod
        spec.loader.exec_module(mod)
    return mod
