"""``cprclip finetune``: train the TSN/TSM (or, for skeletons, ST-GCN) backbone on the single-class
videos.

    cprclip finetune --config configs/synthetic.toml [key=value ...] [--stop-after-epoch N]
    torchrun --nproc-per-node=K -m pipeline finetune --config ... [key=value ...]

Keys are those of :class:`finetune.config.FinetuneConfig` (``[finetune]`` in the TOML). Writes
``<finetune_dir>/<dataset>/<backbone>-<modality>/checkpoint.safetensors`` per stream, which
``cprclip extract`` (``checkpoint = "auto"``) then uses. A rerun with the same config, manifest
and init does nothing; an interrupted run resumes from its last finished epoch.
Exit code 0 on success, 2 for a config, manifest, checkpoint, video or skeleton-file problem
(one line naming the video and its manifest row), or a write that
failed (e.g. a full disk: one line naming the file; a rerun resumes from the last saved epoch).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--stop-after-epoch", type=int, default=None, metavar="N",
                   help="save the state and stop after epoch N (a time-boxed job); rerun to resume")


def _check_moved_keys(config: str | None, overrides: list[str]) -> None:
    """``runs_dir`` no longer places fine-tuning (it writes under ``finetune_dir``): a
    ``[finetune] runs_dir`` or ``runs_dir=`` override is an error naming the new key, never a
    silent change of place. ``[common] runs_dir`` still places the models' runs."""
    from pipeline.config import ConfigError, parse_overrides, read_toml

    given = set(parse_overrides(overrides))
    if config:
        section = read_toml(config).get("finetune", {})
        given |= set(section) if isinstance(section, dict) else set()
    if "runs_dir" in given:
        raise ConfigError("[finetune] key 'runs_dir': fine-tuning now writes under "
                          "finetune_dir (default \"finetuned\"): <finetune_dir>/<dataset>/"
                          "<backbone>-<modality>/; set finetune_dir=... instead")


def main(args: argparse.Namespace) -> int:
    from extract.backbones import WeightsError
    from extract.decoders import DecodeError
    from finetune.config import FinetuneConfig
    from finetune.loop import run_finetune
    from pipeline.config import load_stage_config
    from pipeline.manifest import ManifestError
    from pipeline.runs import ResumeError
    from pipeline.skeleton import SkeletonError

    _check_moved_keys(args.config, args.overrides)
    cfg = load_stage_config(FinetuneConfig, "finetune", args.config, args.overrides)
    try:
        results = run_finetune(cfg, stop_after_epoch=args.stop_after_epoch)
    except (ManifestError, WeightsError, DecodeError, ResumeError, SkeletonError) as e:
        log.error("%s", e)
        return 2
    except OSError as e:  # e.g. a full disk: the message names the file; rerun to resume
        where = "" if e.filename else f" (writing under {cfg.finetune_dir})"
        log.error("finetune: %s%s", e, where)
        return 2
    if int(os.environ.get("RANK", 0)) == 0:
        for r in results:
            val = ", ".join(f"val {k} {v:.3f}" for k, v in r.val.items())
            sys.stdout.write(f"{r.modality}: {r.status} ({r.epochs_run} epoch(s), "
                             f"{r.seconds:.0f} s{', ' + val if val else ''}) -> {r.checkpoint}\n")
    return 0
