"""How composite-error mAP grows with the number of training people (docs/results.md, "the
heads' learning rate and a loss per stream").

    python bench/probes/people_curve.py OUT_DIR [--config FILE] [key=value ...]

Trains CPR-CLIP+ with ``[train]`` of FILE (default ``configs/synthetic.toml``; plus the overrides, e.g.
``features_dir=features``) on every subset of the training people of size P-1 and P-2 (and all
P), leaving the other people's training clips out of the head's training only: the backbones
and feature files stay as they are (the fine-tuned flow and skeleton backbones saw every
training person), and so do the per-camera standardisation statistics (all training people). Each run goes to OUT_DIR/<subset>/; then prints, per subset size, the mean
(min-max) test mAP per video and with the views fused, for both score kinds. Run it from the
folder of a dataset whose features exist (after ``make extract``).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DEFAULT_CONFIG = "configs/synthetic.toml"


def _scores(run_dir: Path) -> dict[str, tuple[float, float]]:
    """{head: (mAP per video, mAP views fused)} on the test split, as ``cprclip eval`` ranks."""
    from evaluate import metrics as M
    from evaluate.runner import _load_run, _prepared, _split_arrays, read_run_features

    run = _load_run(run_dir)
    sets = _prepared(run, read_run_features(run.feature_files, run.feature_recipes), run.name, [])
    x, meta = _split_arrays(sets, "test")
    out = {}
    for head, s in run.scores(x).items():
        s = np.asarray(s, dtype=np.float64)
        fused = M.fuse_views(s, meta["labels"], meta["take_id"], "mean")
        out[head] = (100 * M.mean_average_precision(s, meta["labels"], "skip").value,
                     100 * M.mean_average_precision(fused.scores, fused.labels, "skip").value)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    import torch

    import train.loop as loop
    from pipeline.config import load_stage_config
    from pipeline.runtime import resolve_threads
    from train.config import TrainConfig

    out_dir, rest = Path(argv[0]), argv[1:]
    config = DEFAULT_CONFIG
    if rest[:1] == ["--config"]:
        config, rest = rest[1], rest[2:]
    overrides = rest + ["models=cpr_clip_plus"]  # prepare() then builds its prompt bank
    cfg = load_stage_config(TrainConfig, "train", config, overrides)
    if cfg.num_threads != 0:  # as `cprclip train`: the demo's one thread never stalls on a busy CPU
        torch.set_num_threads(resolve_threads(cfg.num_threads, 0, "[train] num_threads"))
    prep = loop.prepare(cfg)
    people = sorted({str(p) for p in prep.train.participant})
    subsets = [tuple(people)] + [c for k in (len(people) - 1, len(people) - 2) if k >= 1
                                 for c in itertools.combinations(people, k)]
    results: dict[int, list[dict[str, tuple[float, float]]]] = {}
    for keep in subsets:
        name = "+".join(keep)
        sub = dataclasses.replace(
            prep, train=prep.train.select(np.isin(prep.train.participant.astype(str), keep)))
        run_cfg = load_stage_config(TrainConfig, "train", config,
                                    overrides + [f"runs_dir={out_dir / name}"])
        loop.train_one(run_cfg, "cpr_clip_plus", sub, config)
        res = _scores(out_dir / name / "cpr_clip_plus")
        results.setdefault(len(keep), []).append(res)
        print(name, {h: f"{v:.1f} / {f:.1f}" for h, (v, f) in res.items()}, flush=True)
    print("\n| training people | runs | scores | mAP per video, mean (min-max) | fused |")
    print("|---|---|---|---|---|")
    for n in sorted(results, reverse=True):
        for head in results[n][0]:
            v = np.array([r[head][0] for r in results[n]])
            f = np.array([r[head][1] for r in results[n]])
            print(f"| {n} | {len(v)} | {head} | {v.mean():.1f} ({v.min():.1f}-{v.max():.1f}) | "
                  f"{f.mean():.1f} ({f.min():.1f}-{f.max():.1f}) |")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:]))
