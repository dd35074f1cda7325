"""``cprclip predict VIDEO [VIDEO ...] [key=value ...]``: detected errors and advice for the
1-4 views of one take.

Like every stage, it takes ``--config FILE`` and ``key=value`` overrides of its config section
(``[predict]``: ``run=runs/bce head=bce device=cuda``), written after the videos. It loads the
run with :meth:`assist.assistant.Assistant.load` and prints what
:meth:`~assist.assistant.Assistant.analyse` found, as text or JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from pipeline.cli import DEFAULT_CONFIG
from pipeline.config import load_stage_config

log = logging.getLogger(__name__)

# An item that reads as `key=value` (a config key is a plain identifier) is an override,
# unless a file of that name exists: a video may well be called `take=1.mp4`.
_OVERRIDE = re.compile(r"^[A-Za-z_]\w*=")

# The flags of the first `predict`, before it followed the stages' convention: each still
# works, with a warning that names its `key=value` spelling.
OLD_FLAGS = {"run": "run", "threshold": "threshold_source", "head": "head", "device": "device"}


class _Views(argparse.Action):
    """``--views 2 4``: the leading integers. argparse hands a ``+`` option every item up to the
    next flag, so the videos and ``key=value`` items written after it (``--views 2 4
    run=runs/bce``) are passed back to the positionals instead of failing as "not an int"."""

    def __call__(self, parser, namespace, values, option_string=None):
        views: list[int] = []
        for i, v in enumerate(values):
            if not re.fullmatch(r"[+-]?\d+", v.strip()):
                namespace.after_views = list(values[i:])
                break
            views.append(int(v))
        if not views:
            parser.error(f"argument {option_string}: expected a view number (1-4), "
                         f"got {values[0]!r}")
        namespace.views = views


USAGE = ("cprclip predict VIDEO [VIDEO ...] [key=value ...] [--views N [N ...]] [--json] "
         "[--config FILE]")
ITEMS_HELP = ("the 1-4 views of one take (any video files; no manifest needed), then key=value "
              "overrides of [predict]: run, head, threshold_source, device, bce_threshold, "
              "clip_z, runs_dir")


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--views", nargs="+", action=_Views, metavar="N",
                   help="view number (1-4) of each video, in order (default: 1, 2, ...)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--config", default=None,
                   help=f"TOML config; its [predict] section (default: {DEFAULT_CONFIG} when it "
                        "exists here, else the built-in defaults)")
    p.set_defaults(after_views=[])
    old = p.add_argument_group("deprecated (write key=value after the videos instead)")
    old.add_argument("--run", help="run=NAME_OR_FOLDER")
    old.add_argument("--threshold", choices=("val", "fixed"), help="threshold_source=val|fixed")
    old.add_argument("--head", choices=("auto", "clip", "bce"), help="head=auto|clip|bce")
    old.add_argument("--device", help="device=cpu|cuda|cuda:N")
    old.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="KEY=VALUE")


def add_arguments(p: argparse.ArgumentParser) -> None:
    # REMAINDER: everything from the first video on, flags included, so that `a.mp4 --json
    # run=runs/bce` works; a plain `*` positional would leave `run=runs/bce` unrecognised once
    # a flag came between (argparse matches positionals once). _reparse sorts it out.
    p.usage = USAGE
    p.add_argument("items", nargs=argparse.REMAINDER, metavar="VIDEO ... key=value",
                   help=ITEMS_HELP)
    _options(p)


def _reparse(args: argparse.Namespace) -> argparse.Namespace:
    """The options and items of the command line wherever they were written: those before the
    first video are in ``args`` already, the rest are parsed from ``args.items``."""
    inner = argparse.ArgumentParser(prog="cprclip predict", usage=USAGE)  # `a.mp4 --help` too
    inner.add_argument("items", nargs="*", metavar="VIDEO ... key=value", help=ITEMS_HELP)
    _options(inner)
    late = inner.parse_intermixed_args(args.items)
    return argparse.Namespace(
        items=late.items + args.after_views + late.after_views,
        views=late.views if late.views is not None else args.views,
        json=args.json or late.json,
        config=late.config if late.config is not None else args.config,
        set=args.set + late.set,
        **{f: getattr(late, f) or getattr(args, f) for f in OLD_FLAGS},
    )


def split_items(items: list[str]) -> tuple[list[str], list[str]]:
    """``(videos, overrides)`` from the positional items, each keeping its order."""
    videos, overrides = [], []
    for item in items:
        is_override = _OVERRIDE.match(item) and not Path(item).exists()
        (overrides if is_override else videos).append(item)
    return videos, overrides


def _old_flag_overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` spelling of the deprecated flags given, each with its warning."""
    out = []
    for flag, key in OLD_FLAGS.items():
        value = getattr(args, flag)
        if value:
            log.warning("--%s is deprecated: write %s=%s after the videos", flag, key, value)
            out.append(f"{key}={value}")
    for item in args.set:
        log.warning("--set is deprecated: write %s after the videos", item)
        out.append(item)
    return out


def main(args: argparse.Namespace) -> int:
    from assist.assistant import Assistant, PredictConfig, PredictError, check_take, format_text

    args = _reparse(args)
    videos, overrides = split_items(args.items)
    # the deprecated flags first, so that a key=value written after the videos wins
    overrides = _old_flag_overrides(args) + overrides
    config = args.config
    if config is None and Path(DEFAULT_CONFIG).is_file():
        config = DEFAULT_CONFIG  # run from the repo root; elsewhere the built-in defaults
    cfg = load_stage_config(PredictConfig, "predict", config, overrides)
    if not videos:
        log.error("no video given: cprclip predict VIDEO [VIDEO ...] [key=value ...]")
        return 2
    try:
        check_take(videos, args.views)  # before loading anything: a wrong count fails fast
        kw = {"skeletons": list(cfg.skeletons)} if cfg.skeletons else {}
        pred = Assistant.load(config=cfg).analyse(videos, args.views, **kw)
    except PredictError as e:
        log.error("%s", e)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(pred.to_dict(), indent=1) + "\n")
    else:
        sys.stdout.write(format_text(pred))
    return 0
