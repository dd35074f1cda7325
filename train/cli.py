"""``cprclip train``: train every model in the config's ``models`` list on HDF5 features."""
from __future__ import annotations

import argparse
import logging
import sys

from pipeline.cli import add_config_arguments
from pipeline.config import load_stage_config

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    from pipeline.lock import LockHeld
    from pipeline.log import first_line
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
