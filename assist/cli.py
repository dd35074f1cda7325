"""``cprclip predict VIDEO [VIDEO ...]``: detected errors and advice for the 1-4 views of one take.

Loads the run with :meth:`assist.assistant.Assistant.load` and prints what
:meth:`~assist.assistant.Assistant.analyse` found, as text or JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline.cli import DEFAULT_CONFIG
from pipeline.config import load_stage_config

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="the 1-4 views of one take (any video files; no manifest needed)")
    p.add_argument("--run", help="run folder or name under runs_dir "
                                 "(default: runs/cpr_clip_plus, else the best run by val mAP)")
    p.add_argument("--views", nargs="+", type=int, metavar="N",
                   help="view number (1-4) of each video, in order (default: 1, 2, ...)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--threshold", choices=("val", "fixed"),
                   help="val: per-class thresholds chosen on val by 'cprclip eval' (default); "
                        "fixed: 0.5 on BCE probabilities, z-score rule on similarities")
    p.add_argument("--head", choices=("auto", "clip", "bce"),
                   help="which scores decide (default auto: the better one on val)")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N")
    p.add_argument("--config", default=None,
                   help=f"TOML config; its [predict] section (default: {DEFAULT_CONFIG} when it "
                        "exists here, else the built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of [predict]; repeatable")


def main(args: argparse.Namespace) -> int:
    from assist.assistant import Assistant, PredictConfig, PredictError, check_take, format_text

    overrides = list(args.set)
    for key, value in (("run", args.run), ("threshold_source", args.threshold),
                       ("head", args.head), ("device", args.device)):
        if value:
            overrides.append(f"{key}={value}")
    config = args.config
    if config is None and Path(DEFAULT_CONFIG).is_file():
        config = DEFAULT_CONFIG  # run from the repo root; elsewhere the built-in defaults
    cfg = load_stage_config(PredictConfig, "predict", config, overrides)
    try:
        check_take(args.videos, args.views)  # before loading anything: a wrong count fails fast
        pred = Assistant.load(config=cfg).analyse(args.videos, args.views)
    except PredictError as e:
        log.error("%s", e)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(pred.to_dict(), indent=1) + "\n")
    else:
        sys.stdout.write(format_text(pred))
    return 0
