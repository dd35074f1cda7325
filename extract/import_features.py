"""``cprclip import-features``: the authors' released feature pickles -> one feature-store file.

    cprclip import-features single=TSN_Single_Feat.pkl composite=TSN_Composite_Feat.pkl \\
        dataset=cpr_clip backbone=tsn_r50 [modalities=rgb] [segments=0] [val_fraction=0.2] [seed=0]

The work and its rules are in :mod:`extract.authors_features`; pickles are read only through
the restricted unpickler of :mod:`pipeline.pickle_safe`.
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
    from extract.authors_features import ImportFeaturesConfig, import_features

    cfg = load_stage_config(ImportFeaturesConfig, "import_features", args.config, args.overrides)
    try:
        path, s = import_features(cfg)
    except (OSError, ValueError) as e:  # format, refused pickle, store and disk errors
        log.error("import-features: %s", first_line(e))
        return 1
    sys.stdout.write(f"{path}\ttrain={s['train']}\tval={s['val']}\ttest={s['test']}"
                     f"\tT={s['segments']}\tD={s['dim']}\n")
    sys.stdout.write("note: takes, views and participants are unknown in these files; "
                     "cprclip eval skips view fusion for them\n")
    return 0
