"""``cprclip extract``: per-segment backbone features of every manifest video into HDF5.

    cprclip extract --config configs/synthetic.toml [key=value ...]
    torchrun --nproc-per-node=K -m pipeline extract --config ... [key=value ...]

Keys are those of :class:`extract.runner.ExtractConfig` (``[extract]`` in the TOML). Exit code
0 when every video was extracted (or already was), 1 when some failed (see failures.csv),
2 for a config, manifest or checkpoint problem.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    from extract.backbones import WeightsError
    from extract.runner import ExtractConfig, ExtractError, run, summary
    from pipeline.config import load_stage_config
    from pipeline.features import FeatureStoreError
    from pipeline.log import first_line
    from pipeline.manifest import ManifestError

    cfg = load_stage_config(ExtractConfig, "extract", args.config, args.overrides)
    try:
        results, failed = run(cfg)
    except (ExtractError, ManifestError, WeightsError, FeatureStoreError) as e:
        log.error("%s", e)
        return 2
    except OSError as e:  # a folder that cannot be made or written: the OS's words, the path
        log.error("extract: %s", first_line(e))
        return 2
    if int(os.environ.get("RANK", 0)) == 0:
        text = summary(results, failed)
        (log.warning if failed else log.info)("summary: %s", text)
        sys.stdout.write(text + "\n")
    return 1 if failed else 0
