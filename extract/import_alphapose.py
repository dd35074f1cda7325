"""``cprclip import-alphapose``: AlphaPose's JSON results -> skeleton files.

    cprclip import-alphapose json=alphapose-results.json out=data/cpr_coach/skeleton/V1.npz \\
        video=V1.mp4 [person=best|track] [track=-1] [first_frame=0]
    cprclip import-alphapose json=alphapose/ out=data/cpr_coach/skeleton/ video=videos/
    cprclip import-alphapose json=r.json out=r.npz width=4096 height=2160 fps=25

The format and its rules are in :mod:`extract.alphapose`. Prints each written file; a bad file
is one error line naming it (and the detection), and the exit status is 1.
"""
from __future__ import annotations

import argparse
import logging
import sys

from pipeline.cli import add_config_arguments
from pipeline.config import load_stage_config
from pipeline.log import first_line

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    from extract.alphapose import AlphaPoseError, ImportAlphaPoseConfig, import_alphapose

    cfg = load_stage_config(ImportAlphaPoseConfig, "import_alphapose", args.config,
                            args.overrides)
    try:
        written, errors = import_alphapose(cfg)
    except (AlphaPoseError, OSError) as e:
        log.error("import-alphapose: %s", first_line(e))
        return 1
    for e in errors:
        log.error("import-alphapose: %s", e)
    for p in written:
        sys.stdout.write(f"{p}\n")
    return 1 if errors or not written else 0
