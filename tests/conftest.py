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
