"""``cprclip train``: train every model in the config's ``models`` list on HDF5 features.

``task=NAME`` picks another task of :data:`TASKS`, which reads its own config section:
``cprclip train task=frames [key=value ...]`` trains frame-level classification on ``[frames]``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from pipeline.cli import add_config_arguments
from pipeline.config import load_stage_config

log = logging.getLogger(__name__)

# task -> "module:function(config_path, overrides) -> exit code", its section's keys in the
# overrides. A visible table; "composite" (the default) is CPR-CLIP on [train], below.
TASKS: dict[str, str] = {
    "composite": "",
    "frames": "frames.train:cli_main",  # issue 20: images -> class captions, [frames]
    "narration": "narration.train:cli_main",  # issue 20: video-narration pretraining, [narration]
    "regress": "train.regress:main",  # issue 19: rate or depth from the features, [regress]
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    from pipeline.lock import LockHeld
    from pipeline.log import first_line

    tasks = [o.split("=", 1)[1].strip() for o in args.overrides if o.startswith("task=")]
    task = tasks[-1] if tasks else "composite"
    if task not in TASKS:
        log.error("train: task %r is not one of %s", task, ", ".join(TASKS))
        return 2
    if TASKS[task]:
        import importlib

        module, func = TASKS[task].split(":")
        rest = [o for o in args.overrides if not o.startswith("task=")]
        return int(getattr(importlib.import_module(module), func)(args.config, rest))
    args.overrides = [o for o in args.overrides if not o.startswith("task=")]
    from train.config import TrainConfig
    from train.loop import train_all

    cfg = load_stage_config(TrainConfig, "train", args.config, args.overrides)
    try:
        results = train_all(cfg, args.config)
    except (OSError, ValueError, KeyError, LockHeld) as e:  # OSError: e.g. a full disk
        where = "" if not isinstance(e, OSError) or e.filename else f" (writing under {cfg.runs_dir})"
        log.error("train: %s%s", first_line(e), where)
        return 1
    for r in results:
        val = r.get("val/mAP")
        sys.stdout.write(f"{r['model']}\t{r['run_dir']}\tepochs={r['epochs']}"
                         f"\t{'finished' if r['finished'] else 'stopped'}"
                         f"\tval_mAP={val:.4f}\n" if val is not None else
                         f"{r['model']}\t{r['run_dir']}\tepochs={r['epochs']}\n")
    return 0
