"""The few-shot study of rate and depth regression (issue 19; docs/regress.md).

For each target, method and K (training videos per bin; 0 = all), several seeds: draw the K
videos per bin (train.regress_model.fewshot_indices), fit a head in memory
(train.regress.fit), measure the held-out participants per take (evaluate.regress). Writes the
rows and their mean +- std over seeds as JSON, the Markdown tables, and the plot of MAE
against K. With ``--ablation``, also a table of head variants with every training video.

    .venv/bin/python bench/regress_fewshot.py --config /work/rd_exp/rd.toml \
        --out report/regress_fewshot --png docs/img/regress_fewshot.png [key=value ...]

``key=value`` items override ``[regress]`` (e.g. ``features_dir=...``, ``steps=300``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluate.regress import (plot_study, regression_metrics, study_table,  # noqa: E402
                              summarise_study, take_means)
from pipeline.guidelines import TARGETS  # noqa: E402
from train.regress import (embed_bins, fit, load_config, load_regress_rows,  # noqa: E402
                           training_rows)

log = logging.getLogger("regress_fewshot")

# The heads compared (each a set of [regress] overrides). "plain" is the baseline: the same
# inputs, one linear output, MSE. "plain_pooled" is the literal baseline of the issue: MSE on
# the mean-pooled features, nothing else.
METHODS: dict[str, dict] = {
    "c2f": {"method": "c2f"},
    "plain": {"method": "plain"},
    "plain_pooled": {"method": "plain", "pooling": "mean", "use_pooled": True,
                     "self_similarity": False},
}
# Head variants of the ablation (every training video).
ABLATION: dict[str, dict] = {
    "plain, mean-pooled features": METHODS["plain_pooled"],
    "plain, self-similarity": {"method": "plain", "use_pooled": False, "self_similarity": True},
    "plain, mean-pooled + self-similarity": {"method": "plain", "pooling": "mean",
                                             "use_pooled": True, "self_similarity": True},
    "c2f, mean-pooled": {"method": "c2f", "pooling": "mean", "use_pooled": True,
                         "self_similarity": False},
    "c2f, MFL": {"method": "c2f", "pooling": "mfl", "use_pooled": True,
                 "self_similarity": False},
    "c2f, MFL + self-similarity": {"method": "c2f", "pooling": "mfl", "use_pooled": True,
                                   "self_similarity": True},
    "c2f, self-similarity": {"method": "c2f", "use_pooled": False, "self_similarity": True},
    "c2f, self-similarity, shared context (CoOp-style)": {
        "method": "c2f", "use_pooled": False, "self_similarity": True, "context": "shared"},
    "c2f, self-similarity, per-bin context": {
        "method": "c2f", "use_pooled": False, "self_similarity": True, "context": "per_bin"},
    "c2f, self-similarity, hard decode": {
        "method": "c2f", "use_pooled": False, "self_similarity": True, "decode": "hard"},
}


def measure(cfg, rows, prompts) -> dict:
    """Fit on the training rows of ``cfg`` (shots, seed) and score the held-out takes."""
    train = training_rows(cfg, rows)
    t0 = time.perf_counter()
    model = fit(cfg, train.features, train.y, prompts if cfg.method == "c2f" else None,
                blocks=train.blocks)
    seconds = time.perf_counter() - t0
    tol = TARGETS[cfg.target].tolerance
    out = {"target": cfg.target, "shots": cfg.shots, "seed": cfg.seed,
           "train_videos": len(train), "fit_seconds": round(seconds, 2)}
    for name, splits in (("", tuple(cfg.eval_splits)), ("_val", ("val",)), ("_test", ("test",))):
        held = rows.select(np.isin(rows.split, splits))
        pred, _ = model.predict(torch.from_numpy(held.features), cfg.decode)
        v = regression_metrics(pred, held.y, tol)
        _, pt = take_means(pred, held.take_id)
        _, tt = take_means(held.y, held.take_id)
        t = regression_metrics(pt, tt, tol, cfg.target)
        out.update({f"mae{name}": v["mae"], f"within{name}": v["within"],
                    f"mae_take{name}": t["mae"], f"within_take{name}": t["within"],
                    f"guideline_take{name}": t["guideline"], f"takes{name}": t["n"]})
    return out


def mean_guess(rows, cfg) -> dict:
    """The floor: every held-out take gets the mean of the training values."""
    train = rows.select(rows.split == cfg.train_split)
    out = {}
    for name, splits in (("", tuple(cfg.eval_splits)), ("_val", ("val",)), ("_test", ("test",))):
        held = rows.select(np.isin(rows.split, splits))
        _, tt = take_means(held.y, held.take_id)
        out[f"mae_take{name}"] = float(np.abs(tt - train.y.mean()).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/synthetic.toml")
    p.add_argument("--targets", default="rate,depth")
    p.add_argument("--methods", default="c2f,plain")
    p.add_argument("--shots", default="1,2,4,8,16,0", help="K per bin; 0 = every video")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--ablation", action="store_true", help="also the head variants, all videos")
    p.add_argument("--ablation-seeds", default="0,1,2")
    p.add_argument("--out", default="report/regress_fewshot", help="writes OUT.json and OUT.md")
    p.add_argument("--png", default="", help="the MAE-against-K plot (default OUT.png)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("train.text").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = Path(a.png or f"{out}.png")
    shots = [int(k) for k in a.shots.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    methods = a.methods.split(",")
    rows_out, ablation, floors, timings = [], [], {}, {}
    t_all = time.perf_counter()
    for target in a.targets.split(","):
        t_target = time.perf_counter()
        base = load_config(a.config, [f"target={target}", *a.overrides])
        rows = load_regress_rows(base)
        prompts, text, _ = embed_bins(base, base.edges)
        floors[target] = mean_guess(rows, base)
        for method in methods:
            for k in shots:
                for seed in seeds:
                    cfg = replace(base, **METHODS[method], shots=k, seed=seed)
                    r = {"method": method, **measure(cfg, rows, prompts)}
                    rows_out.append(r)
                    log.info("%s %s K=%s seed %d: MAE/take %.3f (%d videos, %.1f s)", target,
                             method, k or "all", seed, r["mae_take"], r["train_videos"],
                             r["fit_seconds"])
        if a.ablation:
            for name, over in ABLATION.items():
                for seed in [int(s) for s in a.ablation_seeds.split(",")]:
                    cfg = replace(base, **over, shots=0, seed=seed)
                    r = {"variant": name, **measure(cfg, rows, prompts)}
                    ablation.append(r)
                    log.info("%s ablation %s seed %d: MAE/take %.3f", target, name, seed,
                             r["mae_take"])
        timings[target] = round(time.perf_counter() - t_target, 1)
    # the study reports per take (views averaged, as the assistant answers)
    per_take = [{**r, "mae": r["mae_take"], "within": r["within_take"]} for r in rows_out]
    summary = summarise_study(per_take)
    plot_study(summary, png, labels={"c2f": "coarse-to-fine (prompts, ordinal + offset)",
                                     "plain": "plain regression (MSE)",
                                     "plain_pooled": "plain, mean-pooled features"},
               floors={t: f["mae_take"] for t, f in floors.items()})
    md = [f"Held-out participants (val + test splits), per take; mean ± std over seeds "
          f"{a.seeds}. Config {a.config} {' '.join(a.overrides)}", ""]
    for target in a.targets.split(","):
        f = floors[target]
        md += [f"### {target}", "",
               f"Mean guess (every take gets the training mean): MAE {f['mae_take']:.2f} "
               f"(val {f['mae_take_val']:.2f}, test {f['mae_take_test']:.2f}).", "",
               study_table(summary, target, methods)]
    if ablation:
        md += ["### Head variants, every training video", "",
               "| target | variant | MAE held-out | MAE val | MAE test | within tol. | "
               "right side of guideline |", "|---|---|---|---|---|---|---|"]
        for target in a.targets.split(","):
            for name in ABLATION:
                rs = [r for r in ablation if r["variant"] == name and r["target"] == target]
                if not rs:
                    continue
                ms = lambda k: (np.mean([r[k] for r in rs]), np.std([r[k] for r in rs], ddof=1)  # noqa: E731
                                if len(rs) > 1 else 0.0)
                cell = lambda k: "%.2f ± %.2f" % ms(k)  # noqa: E731
                md.append(f"| {target} | {name} | {cell('mae_take')} | {cell('mae_take_val')} | "
                          f"{cell('mae_take_test')} | {100 * ms('within_take')[0]:.0f}% | "
                          f"{100 * ms('guideline_take')[0]:.0f}% |")
        md.append("")
    md.append(f"Wall time: {time.perf_counter() - t_all:.0f} s ({timings}).")
    Path(f"{out}.md").write_text("\n".join(md) + "\n")
    Path(f"{out}.json").write_text(json.dumps(
        {"config": a.config, "overrides": a.overrides, "rows": rows_out, "summary": summary,
         "ablation": ablation, "mean_guess": floors, "seconds": timings}, indent=2) + "\n")
    sys.stdout.write("\n".join(md) + f"\nwrote {out}.md, {out}.json, {png}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
