"""The skeleton stream of ``cprclip extract``: skeleton files -> ST-GCN -> (N, T, D) features.

The runner (:mod:`extract.runner`) treats it like the frame streams: the same feature file
layout ``<backbone>-skeleton-<T>seg.h5``, shards, provenance and ``failures.csv``. What differs
is the input: a row's ``skeleton`` file (manifest column, or the pose index) instead of its
video, read whole (:func:`skeleton_input`: sampled at ``skeleton_fps``, normalised by
:mod:`extract.skeleton_input`), and a model that sees the whole video at once and averages its
output over T equal windows of time (:meth:`extract.stgcn.STGCN.segment_features`).

Shapes: B videos, C = 3 channels (x, y, score), F frames at ``skeleton_fps``, V = 23 joints,
T segments, D feature dim.
"""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extract.skeleton_input import describe, load_normalized, to_channels_first
from pipeline.skeleton import SkeletonError

log = logging.getLogger(__name__)


def skeleton_input(cfg: Any, path: Path | None) -> np.ndarray:
    """One row's ST-GCN input (C, F, V) float32 from its skeleton file. ``cfg``: the extract
    config (``skeleton_fps``, ``min_frames``). Raises SkeletonError with a one-line reason."""
    if path is None:
        raise SkeletonError("no skeleton file (the manifest's 'skeleton' column is empty and no "
                            "pose index lists one; run 'cprclip pose')")
    kp = load_normalized(path, cfg.skeleton_fps)
    if len(kp) < cfg.min_frames:
        raise SkeletonError(f"{path}: too few frames ({len(kp)} at {cfg.skeleton_fps:g} fps < "
                            f"min_frames {cfg.min_frames})")
    return to_channels_first(kp)


def skeleton_sources(records: list) -> str:
    """The ``source`` of the rows' skeleton files (``synth-noisy``, ``alphapose``, ...), sorted
    and joined by ``+``; files that cannot be read are left out (they fail on their own)."""
    found: set[str] = set()
    for r in records:
        path = r.skeleton
        if path is None:
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                found.add(str(z["source"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            continue
    return "+".join(sorted(found))


def recipe_fields(cfg: Any) -> dict[str, str]:
    """The recipe entries that describe the skeleton stream's input (no frames, no crops)."""
    kin = ""
    if getattr(cfg, "skeleton_kinematics", False):
        from extract.kinematics import describe as kinematics

        kin = "; + " + kinematics(cfg.skeleton_fps)
    return {"sampling": f"{describe(cfg.skeleton_fps)}; whole video, ST-GCN output averaged "
                        f"over {cfg.segments} equal windows of time{kin}",
            "crops": "none (keypoints)", "decoder": "none (skeleton files)"}


@torch.inference_mode()
def skeleton_features(model: torch.nn.Module, inputs: list[np.ndarray] | torch.Tensor,
                      segments: int, device: torch.device, amp: bool = False) -> np.ndarray:
    """(B, T, D) float32 features of B inputs: a list of (C, F_b, V) arrays (any lengths) or a
    (B, C, F, V) tensor. Inputs of one length go through the model together."""
    if isinstance(inputs, torch.Tensor):
        inputs = [x.numpy() for x in inputs.cpu()]
    threads = torch.get_num_threads()
    if device.type == "cpu":
        # One thread: the graph's convolutions are small, and with two on this project's
        # shared 2-core machine, 160 demo videos took 8.8-32 s against 1.8 s (OpenMP's threads
        # wait on a busy core).
        torch.set_num_threads(1)
    try:
        return _features(model, inputs, segments, device, amp)
    finally:
        torch.set_num_threads(threads)


def _features(model: torch.nn.Module, inputs: list[np.ndarray], segments: int,
              device: torch.device, amp: bool) -> np.ndarray:
    out: list[np.ndarray | None] = [None] * len(inputs)
    by_len: dict[int, list[int]] = {}
    for i, x in enumerate(inputs):
        by_len.setdefault(int(x.shape[1]), []).append(i)
    for idx in by_len.values():
        x = torch.from_numpy(np.stack([inputs[i] for i in idx])).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            f = model.segment_features(x, segments)
        f = f.float().cpu().numpy()
        for j, i in enumerate(idx):
            out[i] = f[j]
    return np.stack(out)
