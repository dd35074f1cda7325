"""``cprclip manifest check PATH`` and ``cprclip manifest build-cpr-coach ROOT``."""
from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter

from pipeline.manifest import ManifestError, parse_manifest

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("check", help="validate a manifest and print a summary")
    c.add_argument("path")
    c.add_argument("--no-files", action="store_true", help="do not check that files exist")
    c.add_argument("--allow-outside-root", action="store_true")
    b = sub.add_parser("build-cpr-coach", help="write a manifest for a CPR-Coach folder")
    b.add_argument("root", help="the CPR-Coach dataset folder")
    b.add_argument("--out", default=None, help="manifest path (default: ROOT/manifest.csv)")
    b.add_argument("--val-participants", default="", help="comma-separated participant ids")
    b.add_argument("--test-participants", default="", help="comma-separated participant ids")


def main(args: argparse.Namespace) -> int:
    if args.action == "build-cpr-coach":
        from pipeline.cpr_coach import build_manifest

        return build_manifest(args)
    try:
        records, errors = parse_manifest(args.path, check_files=not args.no_files,
                                         allow_outside_root=args.allow_outside_root)
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
    if not by_split:
        return 1
    return 1 if errors else 0
