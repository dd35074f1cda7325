"""``cprclip export-features``: one feature-store file -> the authors' two feature pickles.

    cprclip export-features dataset=synthetic backbone=tsn_r18 modalities=rgb,flow segments=8 \\
        [shape=mean|segments] [out_dir=DIR] [prefix=TSN]

Writes ``<prefix>_Single_Feat.pkl`` and ``<prefix>_Composite_Feat.pkl`` per stream
(:func:`extract.authors_features.export_features`), which the authors' scripts and
``cprclip import-features`` read.
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
    from extract.authors_features import ExportFeaturesConfig, export_features

    cfg = load_stage_config(ExportFeaturesConfig, "export_features", args.config, args.overrides)
    try:
        summaries = export_features(cfg)
    except (OSError, ValueError) as e:  # a missing or bad store file, a full disk
        log.error("export-features: %s", first_line(e))
        return 1
    for s in summaries:
        sys.stdout.write(f"{s['single']}\trows={s['single_rows']}\n"
                         f"{s['composite']}\trows={s['composite_rows']}\n"
                         f"{s['modality']}: {s['values_per_row']} values per row "
                         f"(segments={s['segments']}, D={s['dim']})\n")
    return 0
