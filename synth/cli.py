"""``cprclip synth``: generate the synthetic multi-view CPR dataset (videos + manifest).

    cprclip synth --config configs/synthetic.toml [key=value ...]

Prints the manifest's path on stdout.
"""
from __future__ import annotations

import argparse
import sys

from pipeline.config import load_stage_config
from synth.config import SynthConfig
from synth.runner import generate

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    cfg = load_stage_config(SynthConfig, "synth", args.config, args.overrides)
    path = generate(cfg)
    sys.stdout.write(f"{path}\n")
    return 0
