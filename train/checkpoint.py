"""Checkpoints as safetensors (nothing is unpickled): weights, optimizer state, JSON metadata.

``checkpoint.safetensors`` (the finished run): ``model.*`` weights, ``text.test_prompts``
(C, E) and optionally ``text.set_prompts`` (S, E) + ``text.set_labels`` (S, C); metadata
``model_args`` and ``model_name`` as JSON strings.

``last.safetensors`` (for resume): ``model.*``, ``optim.<i>.<name>`` AdamW state per
parameter, metadata ``epoch``, ``param_groups`` and ``config`` (JSON).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

FORMAT = "cprclip-train-1"


def save(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write atomically (tmp + rename). ``meta`` values are JSON-encoded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    try:
        save_file(tensors, str(tmp), metadata={"format": FORMAT,
                                               **{k: json.dumps(v) for k, v in meta.items()}})
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:  # e.g. a full disk: name the file, no temporary
        tmp.unlink(missing_ok=True)
        raise OSError(getattr(e, "errno", None), getattr(e, "strerror", None) or str(e),
                      str(path)) from None


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            if raw.get("format") != FORMAT:
                raise ValueError(f"{path}: format {raw.get('format')!r}, this code reads {FORMAT!r}")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as e:  # truncated, or not safetensors at all (e.g. a pickle)
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    meta = {k: json.loads(v) for k, v in raw.items() if k != "format"}
    return tensors, meta


def with_prefix(d: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in d.items()}


def strip_prefix(d: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Optimizer state as flat tensors ``optim.<param index>.<name>`` plus JSON param groups."""
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for name, v in state.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"optim.{idx}.{name}"] = t
    return tensors, sd["param_groups"]


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                   param_groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": param_groups})
