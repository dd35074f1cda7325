"""Weights of a finetune stream: where they start, what identifies them, how they are stored.

- Start: :func:`init_source` picks the initial file (``init_checkpoint``, or the finetuned RGB
  stream for ``flow_init = "rgb"``); :func:`init_weights` loads it where shapes fit, renaming a
  torchvision ResNet's keys (:func:`torchvision_to_mmaction`) and turning an RGB first conv into
  a flow one (:func:`cross_modality_conv1`).
- Identity: :func:`run_identity` / :func:`fingerprint`, what determines the weights.
- Files: ``checkpoint.safetensors`` (:func:`save_checkpoint`, :func:`read_checkpoint_meta`) and
  the resumable ``state.pt`` (:func:`save_state`, :func:`load_state`).
"""
from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from extract.backbones import cross_modality_conv1
from finetune.config import FRAME_ONLY, NOT_FINGERPRINTED, SKELETON_ONLY, FinetuneConfig
from pipeline.atomic import write_atomic
from pipeline.config import to_dict
from pipeline.log import first_line
from pipeline.runs import ResumeError, SavedState
from pipeline.runs import fingerprint as identity_fingerprint

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.safetensors"
STATE_NAME = "state.pt"
FORMAT = "cprclip-finetune-1"


# --------------------------------------------------------------------------------------------
# Conversions


_TV_LAYER = re.compile(r"^(layer\d+\.\d+\.)(conv\d|bn\d|downsample\.[01])\.(.+)$")


def torchvision_to_mmaction(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ResNet state dict (``conv1.weight``, ``layer1.0.bn1.weight``) to
    mmaction2's ``backbone.`` names (``backbone.conv1.conv.weight``,
    ``backbone.layer1.0.conv1.bn.weight``). ``fc.*`` (ImageNet's 1000 classes) is dropped.
    Keys that already look like mmaction2's are returned unchanged."""
    if any(k.startswith(("backbone.", "cls_head.")) for k in sd):
        return dict(sd)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("fc."):
            continue
        if k.startswith("conv1."):
            out["backbone.conv1.conv." + k[len("conv1."):]] = v
        elif k.startswith("bn1."):
            out["backbone.conv1.bn." + k[len("bn1."):]] = v
        elif m := _TV_LAYER.match(k):
            prefix, part, rest = m.groups()
            if part.startswith("conv"):
                name = f"{part}.conv"
            elif part.startswith("bn"):
                name = f"conv{part[2:]}.bn"
            else:
                name = "downsample.conv" if part.endswith("0") else "downsample.bn"
            out[f"backbone.{prefix}{name}.{rest}"] = v
        else:
            out[k] = v
    return out



# --------------------------------------------------------------------------------------------
# Initial weights


def init_source(cfg: FinetuneConfig, modality: str) -> tuple[Path | None, str]:
    """(initial weights file or None, its sha256 or "random-init")."""
    from extract.backbones import WeightsError
    from pipeline.features import finetuned_checkpoint_path
    from pipeline.provenance import sha256_file

    if modality == "flow" and cfg.flow_init == "rgb":
        p = finetuned_checkpoint_path(cfg.finetune_dir, cfg.dataset, cfg.backbone, "rgb")
        if not p.is_file():
            raise WeightsError(f"{p}: flow_init=rgb needs the finetuned RGB stream; run "
                               "finetune with modalities=rgb,flow (rgb is trained first)")
        return p, sha256_file(p)
    if modality == "skeleton" and cfg.skeleton_init == "none":
        return None, "random-init"  # init_checkpoint names the frame streams' start
    value = (cfg.init_checkpoint or "none").strip()
    if value.lower() in ("none", ""):
        return None, "random-init"
    if value.lower() == "pretrained":  # the weights the backbone's registry package ships
        from extract.backbones import pretrained_file

        p = pretrained_file(cfg.backbone)
        if p is None:
            raise WeightsError(f"init_checkpoint=pretrained: backbone {cfg.backbone!r} ships no "
                               "pretrained weights (extract/backbones.py BACKBONES, 'pretrained')")
        return p, sha256_file(p)
    p = Path(value.format(modality=modality, backbone=cfg.backbone))
    if not p.is_file():
        raise WeightsError(f"{p}: init_checkpoint file not found (config key 'init_checkpoint')")
    return p, sha256_file(p)


def init_weights(model: nn.Module, path: Path, modality: str) -> str:
    """Load ``path`` (safetensors, or a ``.pth`` read with ``weights_only=True``: an mmaction2
    recognizer, a torchvision ResNet, or our own checkpoint) into ``model`` as a starting point.

    A tensor whose input-channel count differs from the model's (a 3-channel RGB conv1 for a
    10-channel flow model) gets the cross-modality init; other shape mismatches (a 400-class
    Kinetics head) are skipped. Returns the file's sha256.
    """
    from extract.backbones import WeightsError, is_package_weights, load_weights, read_state_dict
    from pipeline.provenance import sha256_file

    path = Path(path)
    sd = read_state_dict(path)
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if is_package_weights(model, sd):  # shipped ImageNet file: pinned, mapped onto the backbone
        return load_weights(model, path)
    if modality != "skeleton":  # an ST-GCN file has its own names (its head is fc.*, too)
        sd = torchvision_to_mmaction(sd)
    own = model.state_dict()
    take: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k not in own:
            continue
        want = own[k].shape
        if v.shape == want:
            take[k] = v
        elif (v.ndim == 4 and len(want) == 4 and v.shape[0] == want[0]
              and v.shape[2:] == want[2:]):
            log.info("%s: %s %s -> %s by cross-modality init (%s)", path.name, k,
                     tuple(v.shape), tuple(want), modality)
            take[k] = cross_modality_conv1(v.float(), want[1]).to(own[k].dtype)
        else:
            log.warning("%s: %s has shape %s, model wants %s; skipped", path.name, k,
                        tuple(v.shape), tuple(want))
    if not take:
        raise WeightsError(f"{path}: no tensor matches the model (first keys: "
                           f"{', '.join(list(sd)[:3])}); wrong checkpoint for this backbone?")
    missing = [k for k in own if k not in take]
    model.load_state_dict(take, strict=False)
    if missing:
        log.info("%s: %d tensor(s) kept at random init, e.g. %s", path.name, len(missing),
                 ", ".join(missing[:4]))
    return sha256_file(path)


# --------------------------------------------------------------------------------------------
# Identity


# Keys renamed since fingerprints were first made keep their old names in the identity, so a
# checkpoint made before the rename still counts as up to date.
_IDENTITY_NAMES = {"lr_schedule": "schedule"}


def run_identity(cfg: FinetuneConfig, modality: str, manifest_sha: str, init_sha: str,
                 cpu_amp: bool) -> dict[str, Any]:
    """What determines a stream's weights: its config (with this one modality in place of
    ``modalities``, less the speed-only keys), the manifest and the initial weights.
    ``cpu_amp`` is the *resolved* choice, so ``"auto"`` that picks bf16 names the same
    weights as ``true`` did. Keys only the other kind of stream reads are left out
    (:data:`finetune.config.SKELETON_ONLY`, :data:`finetune.config.FRAME_ONLY`; for the
    skeleton stream ``init_checkpoint`` too, which its ``init_sha256`` already names)."""
    other = (FRAME_ONLY + ("init_checkpoint",) if modality == "skeleton" else SKELETON_ONLY)
    d = {_IDENTITY_NAMES.get(k, k): v for k, v in to_dict(cfg).items()
         if k not in NOT_FINGERPRINTED and k != "modalities" and k not in other}
    d["modality"] = modality
    d["cpu_amp"] = bool(cpu_amp)
    return {"config": d, "manifest_sha256": manifest_sha, "init_sha256": init_sha}


def fingerprint(cfg: FinetuneConfig, modality: str, manifest_sha: str, init_sha: str,
                cpu_amp: bool) -> str:
    """sha256 of :func:`run_identity`: equal fingerprints mean the same weights."""
    return identity_fingerprint(run_identity(cfg, modality, manifest_sha, init_sha, cpu_amp))


# --------------------------------------------------------------------------------------------
# Files


def read_checkpoint_meta(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of a finetune checkpoint ({} when absent or unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 - missing, truncated or not safetensors: not up to date
        return {}


def save_checkpoint(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """The recognizer's state_dict as safetensors with string metadata; tmp + rename."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomic(path, save(tensors, metadata={k: str(v) for k, v in meta.items()}))


def save_state(path: Path, state: dict[str, Any]) -> None:
    """The resumable training state (tensors and plain values only); tmp + rename."""
    # Serialised in memory: torch's zip writer reports a full disk as an opaque RuntimeError.
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getbuffer())


def load_state(path: Path) -> dict[str, Any]:
    """The training state; a file that is not one raises ResumeError naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated file, or not ours
        raise ResumeError(f"{path}: not a readable training state ({first_line(e, 120)})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise ResumeError(f"{path}: not a finetune training state")
    return state


def saved_state(state: dict[str, Any] | None) -> SavedState | None:
    """What a loaded ``state.pt`` says about its run, for :func:`pipeline.runs.resume_after`."""
    if state is None:
        return None
    identity = json.loads(state["identity"]) if state.get("identity") else None
    return SavedState(int(state["epoch"]), str(state.get("fingerprint", "")), identity)
