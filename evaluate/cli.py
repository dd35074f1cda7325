"""``cprclip eval``: evaluate runs on the composite-error test split and write the report."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

from pipeline.cli import add_config_arguments
from pipeline.config import load_stage_config

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--run", action="append", default=[], metavar="NAME",
                   help="evaluate this run (a folder under runs_dir, or a path); repeatable. "
                        "Default: every run with a checkpoint")


def main(args: argparse.Namespace) -> int:
    from evaluate.runner import EvalConfig, EvalError, format_tables, run_eval

    tasks = [o.split("=", 1)[1].strip() for o in args.overrides if o.startswith("task=")]
    if tasks and tasks[-1] == "regress":  # rate and depth runs (issue 19): [regress]
        from evaluate.regress import main as regress_main

        rest = [o for o in args.overrides if not o.startswith("task=")]
        return regress_main(args.config, rest, "cprclip eval " + " ".join(
            shlex.quote(a) for a in ["--config", str(args.config), *args.overrides]))
    if tasks and tasks[-1] != "composite":
        log.error("eval: task %r is not one of composite, regress", tasks[-1])
        return 2
    overrides = [o for o in args.overrides if not o.startswith("task=")]
    if args.run:
        overrides.append("runs=" + ",".join(args.run))
    cfg = load_stage_config(EvalConfig, "eval", args.config, overrides)
    command = "cprclip eval " + " ".join(shlex.quote(a) for a in
                                         ["--config", str(args.config), *args.overrides,
                                          *(f"--run={r}" for r in args.run)])
    try:
        entries, errors = run_eval(cfg, command=command)
    except EvalError as e:
        log.error("%s", e)
        return 1
    except OSError as e:  # e.g. a full disk while writing the report: the message names the file
        where = "" if e.filename else f" (writing under {cfg.report_dir})"
        log.error("eval: %s%s", e, where)
        return 1
    if entries:
        sys.stdout.write("\n" + format_tables(entries))
        sys.stdout.write(f"\nReport: {cfg.report_dir}/report.html (and report.md)\n")
    return 1 if errors else 0
