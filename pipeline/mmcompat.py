"""Import mmaction2 1.2.0 despite its two known packaging traps (docs/design.md, "mmaction2 traps").

1. The wheel and sdist lack ``mmaction/models/localizers/drn``, yet
   ``mmaction.models.localizers`` imports ``DRN`` from it. We never use the DRN temporal
   localizer, so we register a placeholder module whose ``DRN`` raises when built.
2. mmaction imports ``importlib_metadata`` without declaring it; ``requirements.txt`` installs
   it, and we fail with a clear message if it is absent.
3. (found on this project's machines) when ``transformers`` is installed, mmaction imports its
   VindLU multimodal models, which need a transformers 4.x API that transformers 5 removed. We
   use none of them, so we switch mmaction's multimodal flag off and it registers placeholders.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types


class MMActionUnavailable(ImportError):
    pass


def _install_drn_placeholder() -> None:
    name = "mmaction.models.localizers.drn"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec("mmaction")
    if spec is None or not spec.submodule_search_locations:
        return
    import os

    real = os.path.join(spec.submodule_search_locations[0], "models", "localizers", "drn")
    if os.path.isdir(real):  # a fixed mmaction release: nothing to do
        return

    class DRN:  # noqa: D401 - placeholder
        def __init__(self, *a, **k):
            raise MMActionUnavailable(
                "mmaction2's DRN localizer is missing from its wheel and is not used by cprclip")

    pkg = types.ModuleType(name)
    pkg.__path__ = []  # a package, so that "drn.drn" resolves below
    mod = types.ModuleType(name + ".drn")
    mod.DRN = DRN
    pkg.drn = mod
    sys.modules[name] = pkg
    sys.modules[name + ".drn"] = mod


def import_mmaction_models():
    """Return ``mmaction.models`` with both traps handled; raises MMActionUnavailable."""
    if importlib.util.find_spec("importlib_metadata") is None:
        raise MMActionUnavailable(
            "mmaction2 needs the 'importlib-metadata' package; run 'make setup'")
    if importlib.util.find_spec("mmaction") is None:
        raise MMActionUnavailable("mmaction2 is not installed; run 'make setup'")
    _install_drn_placeholder()
    import mmaction.utils.dependency as dep

    dep.WITH_MULTIMODAL = False
    models = importlib.import_module("mmaction.models")
    from mmaction.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    return models
