"""``cprclip frames``: write the frame dataset from the manifest, or check a user's one.

    cprclip frames --config configs/synthetic.toml [key=value ...]     # write (resumable)
    cprclip frames --check [frames_dir=FOLDER]                          # validate, summarise

Keys are those of ``[frames]`` (:class:`frames.config.FramesConfig`). Training on the dataset is
``cprclip train task=frames`` (frames/train.py). Exit code 0 when every video (or row) is good,
1 when some failed (failures.csv, or one line per bad row), 2 for a config or manifest problem.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--check", action="store_true",
                   help="only validate frames_dir (class folders + metadata.csv) and summarise it")


def check(cfg) -> int:
    from frames.layout import FrameDataError, parse_metadata

    try:
        ds, errors = parse_metadata(cfg.root)
    except FrameDataError as e:
        log.error("%s", e)
        return 2
    for e in errors:
        log.error("%s", e)
    counts = Counter((r.split, r.cls) for r in ds.rows)
    people = {s: sorted({r.participant for r in ds.split(s) if r.participant})
              for s in ("train", "val", "test")}
    out = [f"{cfg.root}: {len(ds.rows)} good rows, {len(errors)} bad, "
           f"{len(ds.classes)} classes, {len({r.video_id for r in ds.rows})} videos"]
    for s in ("train", "val", "test"):
        n = sum(v for (split, _), v in counts.items() if split == s)
        if n:
            out.append(f"  {s:<5} {n} images, participants {', '.join(people[s]) or '-'}")
    for c, cap in zip(ds.classes, ds.captions):
        n = sum(v for (_, cls), v in counts.items() if cls == c)
        out.append(f"  {c:<30} {n:>6}  {cap}")
    sys.stdout.write("\n".join(out) + "\n")
    return 1 if errors or not ds.rows else 0


def main(args: argparse.Namespace) -> int:
    from frames.config import FramesConfig
    from frames.writer import write_frames
    from pipeline.config import load_stage_config
    from pipeline.lock import LockHeld
    from pipeline.log import first_line
    from pipeline.manifest import ManifestError

    cfg = load_stage_config(FramesConfig, "frames", args.config, args.overrides)
    if args.check:
        return check(cfg)
    try:
        s = write_frames(cfg)
    except (ManifestError, LockHeld, ValueError) as e:
        log.error("frames: %s", first_line(e))
        return 2
    except OSError as e:  # a full disk, a folder that cannot be made: the OS's words, the path
        log.error("frames: %s", first_line(e))
        return 2
    sys.stdout.write(f"{s.root}: {s.images} images of {s.videos - s.failed} videos in "
                     f"{s.classes} classes ({s.written} written, {s.skipped} already there, "
                     f"{s.failed} failed)\n")
    return 1 if s.failed else 0
