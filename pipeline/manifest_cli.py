"""``cprclip manifest check PATH``: validate a manifest and summarise it.

CPR-Coach's own folder layout is not public, so there is no builder for it: a user writes the
manifest CSV described in README.md ("Real CPR-Coach data") and checks it with this command.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter

from pipeline.manifest import MEASURES, ManifestError, parse_manifest

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("check", help="validate a manifest and print a summary")
    c.add_argument("path")
    c.add_argument("--no-files", action="store_true", help="do not check that files exist")
    c.add_argument("--allow-outside-root", action="store_true")


def main(args: argparse.Namespace) -> int:
    try:
        # The manifest alone: a flow index is the flow stage's output, not part of the check.
        records, errors = parse_manifest(args.path, check_files=not args.no_files,
                                         allow_outside_root=args.allow_outside_root,
                                         use_flow_index=False)
    except ManifestError as e:
        log.error("%s", e)
        return 1
    for e in errors:
        log.error("%s", e)
    by_split = Counter(r.split for r in records)
    kinds = Counter((r.split, "single" if r.is_single else f"{len(r.labels)} errors") for r in records)
    takes = len({r.take_id for r in records})
    sys.stdout.write(f"{args.path}: {len(records)} good rows, {len(errors)} bad, {takes} takes\n")
    for (split, kind), n in sorted(kinds.items()):
        sys.stdout.write(f"  {split:<5} {kind:<9} {n}\n")
    for name, (unit, _, _) in MEASURES.items():  # the optional measurements (issue 19)
        values = [getattr(r, name) for r in records if getattr(r, name) is not None]
        if values:
            sys.stdout.write(f"  {name}: {len(values)} rows, {min(values):g}-{max(values):g} "
                             f"{unit}\n")
    if not by_split:
        return 1
    return 1 if errors else 0
