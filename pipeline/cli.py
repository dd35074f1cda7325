"""The ``cprclip`` command line. Each stage is a subcommand whose code is imported lazily.

Every stage subcommand takes ``--config configs/<x>.toml`` and ``key=value`` overrides; the
overrides go to that stage's frozen config dataclass, which rejects unknown keys.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pipeline.log import setup_logging

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "configs/synthetic.toml"

# subcommand -> (module, one-line help). Each module has ``add_arguments(parser)`` and
# ``main(args) -> int``. A visible table, not a registry: go-to-definition works.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("pipeline.info", "versions, decoders, CUDA and ffmpeg found on this machine"),
    "synth": ("synth.cli", "generate the synthetic multi-view CPR dataset"),
    "narrate": ("synth.narration", "write the narrations of an existing synthetic dataset "
                                   "(no rendering, the manifest untouched; docs/narration.md)"),
    "manifest": ("pipeline.manifest_cli", "check a manifest and summarise it"),
    "flow": ("extract.flow_cli", "compute optical flow videos for a manifest"),
    "pose": ("extract.pose_cli", "2D skeletons (MediaPipe BlazePose) for videos without them"),
    "finetune": ("finetune.cli", "train the TSN/TSM backbone on single-class videos"),
    "extract": ("extract.cli", "extract per-segment features into HDF5"),
    "import-features": ("extract.import_features",
                        "the authors' released feature pickles -> a feature-store file"),
    "export-features": ("extract.export_features",
                        "a feature-store file -> the authors' feature pickles"),
    "import-alphapose": ("extract.import_alphapose",
                         "AlphaPose's JSON results -> skeleton files (pipeline.skeleton)"),
    "train": ("train.cli", "train CPR-CLIP, CPR-CLIP+ or a baseline on HDF5 features"),
    "eval": ("evaluate.cli", "evaluate runs and write the report"),
    "predict": ("assist.cli", "errors and advice for the views of one take"),
    "frames": ("frames.cli", "sample frames of the single-class videos into a class-folder "
                             "image dataset (or check one: --check)"),
    "predict-frames": ("frames.predict", "top-5 classes of each image listed in a CSV"),
    "serve": ("assist.server", "the assistant as a web page and HTTP API (127.0.0.1:8000)"),
}


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """The common ``--config`` option and ``key=value`` overrides of a stage subcommand."""
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"TOML config (default: {DEFAULT_CONFIG})")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="override a key of this stage's config section")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cprclip", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        # Only the chosen subcommand's module is imported, so --help stays fast.
        if name == wanted:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name and module.startswith(e.name):
                    # every stage ships with the project: a missing one is a broken checkout
                    p.set_defaults(_missing=f"'cprclip {name}' cannot start: its module {module} "
                                            "is missing from this checkout (restore it with git, "
                                            "then run 'make setup')")
                    continue
                raise
            mod.add_arguments(p)
            p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        log.error(args._missing)
        return 3
    from pipeline.config import ConfigError

    try:
        return int(args._main(args) or 0)
    except ConfigError as e:
        log.error("config error: %s", e)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
