"""``cprclip eval task=regress``: how well regression runs measure rate and depth on the
held-out participants (issue 19; docs/regress.md).

Metrics (pure numpy, :func:`regression_metrics`): mean absolute error, RMSE, bias, the share
of videos within the target's tolerance (5 per minute, 0.5 cm: :data:`pipeline.guidelines.TARGETS`)
and the share on the right side of the guideline range (below / inside / above, as the
assistant words it: :func:`pipeline.guidelines.status_of`). Each is given per video and per
take (the views' values averaged, as ``cprclip predict`` does), on each held-out split and on
all of them together.

Writes ``runs/<name>/metrics.json`` for every regression run and ``<report_dir>/regress.md``
with a true-against-measured plot, ``regress_scatter.png``. The few-shot study (K videos per
bin, several seeds) uses the same functions: :func:`summarise_study`, :func:`study_table`,
:func:`plot_study` (run by ``bench/regress_fewshot.py``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.guidelines import TARGETS, status_of

log = logging.getLogger(__name__)


# --- metrics (pure) ----------------------------------------------------------------------------

def regression_metrics(pred: np.ndarray, true: np.ndarray, tolerance: float,
                       target: str | None = None) -> dict[str, float]:
    """``mae``, ``rmse``, ``bias`` (mean of pred - true), ``within`` (share with
    |pred - true| <= tolerance), ``n``; with ``target`` also ``guideline`` (share where the
    prediction and the truth fall on the same side of the guideline range)."""
    p = np.asarray(pred, np.float64)
    t = np.asarray(true, np.float64)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"pred {p.shape} and true {t.shape} must be equal 1-D shapes")
    if len(p) == 0:
        return {"n": 0, "mae": float("nan"), "rmse": float("nan"), "bias": float("nan"),
                "within": float("nan")}
    e = p - t
    out = {"n": int(len(p)), "mae": float(np.abs(e).mean()),
           "rmse": float(np.sqrt((e * e).mean())), "bias": float(e.mean()),
           "within": float((np.abs(e) <= tolerance + 1e-9).mean())}
    if target is not None:
        same = [status_of(target, a) == status_of(target, b) for a, b in zip(p, t)]
        out["guideline"] = float(np.mean(same))
    return out


def take_means(values: np.ndarray, take_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(takes, mean of ``values`` (N,) or (N, K) over each take's rows), takes sorted."""
    takes, inv = np.unique(np.asarray(take_id).astype(str), return_inverse=True)
    v = np.asarray(values, np.float64)
    sums = np.zeros((len(takes),) + v.shape[1:])
    np.add.at(sums, inv, v)
    counts = np.bincount(inv, minlength=len(takes)).reshape((-1,) + (1,) * (v.ndim - 1))
    return takes, sums / counts


def split_metrics(pred: np.ndarray, true: np.ndarray, split: np.ndarray, take_id: np.ndarray,
                  target: str, splits: tuple[str, ...]) -> dict[str, Any]:
    """{split or "held_out": {"video": metrics, "take": metrics}} over ``splits``."""
    tol = TARGETS[target].tolerance
    out: dict[str, Any] = {}
    groups = [(s, split == s) for s in splits] + [("held_out", np.isin(split, splits))]
    for name, mask in groups:
        if not mask.any():
            continue
        _, pt = take_means(pred[mask], take_id[mask])
        _, tt = take_means(true[mask], take_id[mask])
        out[name] = {"video": regression_metrics(pred[mask], true[mask], tol, target),
                     "take": regression_metrics(pt, tt, tol, target)}
    return out


# --- one run ---------------------------------------------------------------------------------

def run_config(record: dict[str, Any]):
    """The run's resolved ``[regress]`` config, rebuilt from its config.json."""
    from pipeline.config import build
    from train.regress import RegressConfig

    return build(RegressConfig, dict(record["config"]), "config.json")


def evaluate_regressor(run_dir: str | Path) -> dict[str, Any]:
    """Score a regression run on its held-out splits; returns (and writes) its metrics.json."""
    from pipeline.atomic import write_atomic
    from train.regress import load_regress_rows, load_regressor

    reg = load_regressor(run_dir)
    cfg = run_config(reg.record)
    rows = load_regress_rows(cfg)
    changed = [s["path"] for s, r in zip(rows.sources, reg.sources) if s["sha256"] != r["sha256"]]
    if changed:
        log.warning("run %s: %s changed since training; measuring with the new features",
                    reg.name, ", ".join(changed))
    held = rows.select(np.isin(rows.split, cfg.eval_splits))
    if len(held) == 0:
        raise ValueError(f"run {reg.name}: no rows of {', '.join(cfg.eval_splits)} with a "
                         f"{reg.target} to measure on")
    pred, probs = reg.predict([held.features])
    metrics: dict[str, Any] = {
        "task": "regress", "run": reg.name, "target": reg.target,
        "unit": TARGETS[reg.target].unit, "tolerance": TARGETS[reg.target].tolerance,
        "method": cfg.method, "pooling": cfg.pooling, "context": cfg.context,
        "inputs": inputs_text({"use_pooled": cfg.use_pooled, "pooling": cfg.pooling,
                               "self_similarity": cfg.self_similarity}),
        "shots": cfg.shots, "train_videos": reg.record.get("data", {}).get("train_videos"),
        "weights_sha256": reg.record.get("weights_sha256"),
        "splits": split_metrics(pred, held.y, held.split, held.take_id, reg.target,
                                tuple(cfg.eval_splits)),
    }
    if probs is not None:
        from train.regress_model import bin_index

        metrics["bin_accuracy"] = float((probs.argmax(1) == bin_index(held.y, reg.edges)).mean())
    metrics["predictions"] = {"video_id": held.video_id.tolist(), "take_id": held.take_id.tolist(),
                              "split": held.split.tolist(), "true": held.y.round(4).tolist(),
                              "pred": pred.round(4).tolist()}
    write_atomic(Path(run_dir) / "metrics.json",
                 json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def find_regress_runs(runs_dir: str | Path, names: tuple[str, ...] = ()) -> list[Path]:
    """Regression run folders: ``names`` (folders or names under runs_dir), else every folder
    under runs_dir holding a regressor."""
    from train.regress import is_regress_run

    root = Path(runs_dir)
    if names:
        out = []
        for n in names:
            p = Path(n) if Path(n).is_dir() else root / n
            if not is_regress_run(p):
                raise FileNotFoundError(f"run {n!r}: no regression run at {p}")
            out.append(p)
        return out
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and is_regress_run(p))


# --- the report ----------------------------------------------------------------------------------

def _f(v: float | None, d: int = 2) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.{d}f}"


def _pct(v: float | None) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.0f}%"


def inputs_text(cfg: dict[str, Any]) -> str:
    """What a head reads, in words: ``self-similarity``, ``MFL-pooled + self-similarity``..."""
    parts = []
    if cfg.get("use_pooled", True):
        parts.append({"mfl": "MFL-pooled", "mean": "mean-pooled"}.get(cfg.get("pooling"),
                                                                      str(cfg.get("pooling"))))
    if cfg.get("self_similarity"):
        parts.append("self-similarity")
    return " + ".join(parts)


def runs_table(results: list[dict[str, Any]]) -> str:
    """One Markdown row per run and split: MAE, RMSE, bias, within tolerance, guideline side."""
    head = ("| run | target | method | inputs | K | split | MAE video | MAE take | RMSE take "
            "| bias | within tol. (take) | right side of guideline (take) |")
    lines = [head, "|" + "---|" * 12]
    for r in results:
        for split, m in r["splits"].items():
            v, t = m["video"], m["take"]
            lines.append(
                f"| {r['run']} | {r['target']} ({r['unit']}) | {r['method']} | {r['inputs']} "
                f"| {r['shots'] or 'all'} | {split} ({t['n']} takes) | {_f(v['mae'])} "
                f"| {_f(t['mae'])} | {_f(t['rmse'])} | {_f(t['bias'])} "
                f"| {_pct(t['within'])} (±{r['tolerance']:g}) | {_pct(t.get('guideline'))} |")
    return "\n".join(lines) + "\n"


def plot_scatter(results: list[dict[str, Any]], path: Path) -> Path:
    """True against measured value per held-out take, one panel per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.atomic import save_figure_png

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results):
        p = r["predictions"]
        takes, pred = take_means(np.array(p["pred"]), np.array(p["take_id"]))
        _, true = take_means(np.array(p["true"]), np.array(p["take_id"]))
        t = TARGETS[r["target"]]
        lo, hi = min(true.min(), pred.min()), max(true.max(), pred.max())
        ax.axvspan(t.low, t.high, color="#2a9d8f", alpha=0.12, lw=0)
        ax.axhspan(t.low, t.high, color="#2a9d8f", alpha=0.12, lw=0)
        ax.plot([lo, hi], [lo, hi], color="#888", lw=1)
        ax.scatter(true, pred, s=12, color="#264653")
        ax.set_xlabel(f"true {r['target']} ({t.unit})")
        ax.set_ylabel(f"measured {r['target']} ({t.unit})")
        mae = r["splits"].get("held_out", {}).get("take", {}).get("mae")
        ax.set_title(f"{r['run']}: MAE {_f(mae)} per take", fontsize=10)
    fig.tight_layout()
    save_figure_png(fig, path, dpi=110)
    return path


def write_report(results: list[dict[str, Any]], report_dir: str | Path,
                 command: str = "") -> Path:
    from pipeline.atomic import write_atomic

    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_scatter(results, out / "regress_scatter.png")
    text = ["# Rate and depth (issue 19)", ""]
    if command:
        text += [f"`{command}`", ""]
    text += ["Held-out participants only (the runs never saw them). A take's value is the mean "
             "of its views' values. Tolerances: rate ±5 per minute, depth ±0.5 cm; the "
             "guideline column is the share of takes put on the right side of 100–120/min or "
             "5–6 cm.", "", runs_table(results), f"![true against measured]({png.name})", ""]
    path = out / "regress.md"
    write_atomic(path, "\n".join(text))
    return path


# --- the few-shot study ------------------------------------------------------------------------

def summarise_study(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (target, method, shots, seed, mae, within, ...) -> mean and std over seeds per
    (target, method, shots), in the order first seen."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["target"], r["method"], r["shots"]), []).append(r)
    out = []
    for (target, method, shots), rs in groups.items():
        def ms(key):
            v = np.array([r[key] for r in rs], np.float64)
            return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
        s = {"target": target, "method": method, "shots": shots, "seeds": len(rs),
             "train_videos": float(np.mean([r["train_videos"] for r in rs]))}
        for key in ("mae", "within", "mae_take", "within_take"):
            if key in rs[0]:
                s[key], s[key + "_std"] = ms(key)
        out.append(s)
    return out


def study_table(summary: list[dict[str, Any]], target: str, methods: list[str]) -> str:
    """Markdown: one row per K, per method MAE ± std and share within tolerance ± std."""
    t = TARGETS[target]
    shots = sorted({s["shots"] for s in summary if s["target"] == target},
                   key=lambda k: (k == 0, k))
    head = "| K per bin | train videos | " + " | ".join(
        f"{m}: MAE ({t.unit}) | {m}: within ±{t.tolerance:g}" for m in methods) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(methods))]
    for k in shots:
        cells = []
        nvid = ""
        for m in methods:
            s = next((s for s in summary if (s["target"], s["method"], s["shots"])
                      == (target, m, k)), None)
            if s is None:
                cells += ["–", "–"]
                continue
            nvid = f"{s['train_videos']:.0f}"
            cells += [f"{s['mae']:.2f} ± {s['mae_std']:.2f}",
                      f"{100 * s['within']:.0f} ± {100 * s['within_std']:.0f}%"]
        lines.append(f"| {'all' if k == 0 else k} | {nvid} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_study(summary: list[dict[str, Any]], path: Path, labels: dict[str, str] | None = None,
               floors: dict[str, float] | None = None, title: str = "") -> Path:
    """MAE against K (log axis; "all" at the right end), one panel per target, a line per
    method with its seed std as error bars; ``floors``: {target: MAE of the training-mean
    guess}, drawn dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.atomic import save_figure_png

    targets = list(dict.fromkeys(s["target"] for s in summary))
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 3.8), squeeze=False)
    for ax, target in zip(axes[0], targets):
        ks = sorted({s["shots"] for s in summary if s["target"] == target and s["shots"] > 0})
        xall = (ks[-1] * 2.5) if ks else 1
        for method in dict.fromkeys(s["method"] for s in summary if s["target"] == target):
            ss = sorted((s for s in summary if s["target"] == target and s["method"] == method),
                        key=lambda s: (s["shots"] == 0, s["shots"]))
            x = [s["shots"] if s["shots"] > 0 else xall for s in ss]
            ax.errorbar(x, [s["mae"] for s in ss], yerr=[s["mae_std"] for s in ss], marker="o",
                        capsize=3, label=(labels or {}).get(method, method))
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(ks + [xall])
        ax.set_xticklabels([str(k) for k in ks] + ["all"])
        t = TARGETS[target]
        ax.axhline(t.tolerance, color="#999", lw=0.8, ls="--",
                   label=f"tolerance ±{t.tolerance:g} {t.unit}")
        if floors and target in floors:
            ax.axhline(floors[target], color="#c0262d", lw=0.8, ls=":",
                       label="every take gets the training mean")
        ax.set_xlabel("training videos per bin (K)")
        ax.set_ylabel(f"MAE ({t.unit})")
        ax.set_title(f"{target}: held-out participants", fontsize=10)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure_png(fig, path, dpi=110)
    return path


# --- the command ------------------------------------------------------------------------------

def main(config_path: str | None, overrides: list[str], command: str = "") -> int:
    """``cprclip eval task=regress [runs=a,b] [report_dir=...]``."""
    import sys

    from pipeline.log import first_line
    from train.regress import load_config

    cfg = load_config(config_path, overrides)
    if not cfg.report_dir:  # the report folder of [eval], where the error models' report is
        from dataclasses import replace

        from evaluate.runner import EvalConfig
        from pipeline.config import load_stage_config

        cfg = replace(cfg, report_dir=load_stage_config(EvalConfig, "eval", config_path).report_dir)
    try:
        runs = find_regress_runs(cfg.runs_dir, tuple(cfg.runs))
    except FileNotFoundError as e:
        log.error("eval task=regress: %s", first_line(e))
        return 1
    if not runs:
        log.error("eval task=regress: no regression runs under %s; run 'cprclip train "
                  "task=regress target=rate' first", cfg.runs_dir)
        return 1
    results, failed = [], 0
    for d in runs:
        try:
            results.append(evaluate_regressor(d))
        except (OSError, ValueError, KeyError) as e:
            log.error("eval task=regress: %s: %s", d, first_line(e))
            failed += 1
    if results:
        path = write_report(results, cfg.report_dir, command)
        sys.stdout.write("\n" + runs_table(results) + f"\nReport: {path}\n")
    return 1 if failed else 0
