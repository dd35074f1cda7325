"""Shared test settings: quiet progress bars, one thread (the machine has 2 shared cores)."""
import os

os.environ.setdefault("CPRCLIP_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Every test starts on one thread without progress bars, whatever the test before it set
    (a stage with ``num_threads = "auto"`` takes every core)."""
    try:
        import torch

        torch.set_num_threads(1)  # 2 shared cores: keep tests from fighting over them
    except ImportError:  # pragma: no cover
        pass
    monkeypatch.setenv("CPRCLIP_NO_PROGRESS", "1")


@pytest.fixture(scope="session", autouse=True)
def _converted_weights_cache(tmp_path_factory):
    """Converted pretrained weights (extract/pretrained.py, e.g. I3D's pickle as safetensors)
    go to one folder per test session, not the user's ~/.cache/cprclip."""
    old = os.environ.get("CPRCLIP_CACHE")
    os.environ["CPRCLIP_CACHE"] = str(tmp_path_factory.mktemp("cprclip_cache"))
    yield
    if old is None:
        os.environ.pop("CPRCLIP_CACHE", None)
    else:
        os.environ["CPRCLIP_CACHE"] = old
