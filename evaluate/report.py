"""The evaluation report: one folder with ``report.md``, a self-contained ``report.html`` (PNGs
embedded as base64) and the PNGs themselves.

Input is a list of :class:`Entry` — one per (run, score head): the head's metrics dict (as
written to ``metrics.json`` by :mod:`evaluate.runner`) plus the test arrays the plots need.
Everything here is presentation; the numbers come from :mod:`evaluate.metrics`.
"""
from __future__ import annotations

import base64
import html
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluate import metrics as M
from pipeline.atomic import save_figure_png, write_atomic
from pipeline.taxonomy import CLASSES

log = logging.getLogger(__name__)

HEAD_NAMES = {"clip": "prompt similarity", "bce": "BCE head"}
SHORT_UNIT = {"video": "video", "take_mean": "take (mean)", "take_max": "take (max)"}
UNIT_NAMES = {"video": "per video", "take_mean": "per take, views averaged",
              "take_max": "per take, views max-pooled"}


@dataclass
class Entry:
    """One row of the comparison: a run scored by one head.

    ``test_scores``/``test_labels`` are per-video (N, C); ``pred``/``true`` are the (K, C) 0/1
    predicted and true sets of the decision unit (takes after view fusion, by default).
    """

    run: str
    model: str
    head: str
    metrics: dict
    test_scores: np.ndarray
    test_labels: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        name = self.run if self.run == self.model else f"{self.run} [{self.model}]"
        return f"{name} · {self.head}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.run}-{self.head}")


# --- the comparison table ------------------------------------------------------------------

# (column header, path into the head's metrics dict). AP values are shown in percent.
TABLE_COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    ("mAP", ("test", "video", "map", "value")),
    ("MMIT mAP", ("test", "video", "mmit_map", "value")),
    ("mAP fused-mean", ("test", "take_mean", "map", "value")),
    ("MMIT fused-mean", ("test", "take_mean", "mmit_map", "value")),
    ("mAP fused-max", ("test", "take_max", "map", "value")),
    ("MMIT fused-max", ("test", "take_max", "mmit_map", "value")),
    ("mAP 2 err", ("test", "video", "by_errors", "2", "map")),
    ("mAP 3 err", ("test", "video", "by_errors", "3", "map")),
    ("mAP 4 err", ("test", "video", "by_errors", "4", "map")),
]
DECISION_COLUMNS: list[tuple[str, str]] = [
    ("P micro", "precision_micro"),
    ("R micro", "recall_micro"),
    ("F1 micro", "f1_micro"),
    ("P samples", "precision_samples"),
    ("R samples", "recall_samples"),
    ("F1 samples", "f1_samples"),
    ("exact set", "exact_set_accuracy"),
    ("mean set size", "mean_predicted_set_size"),
]


def _get(d: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _pct(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def comparison_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """Header and string cells of the model comparison (AP in %)."""
    header = ["model", "scores"] + [c for c, _ in TABLE_COLUMNS]
    rows = []
    for e in entries:
        rows.append([e.run if e.run == e.model else f"{e.run} [{e.model}]", e.head]
                    + [_pct(_get(e.metrics, p)) for _, p in TABLE_COLUMNS])
    return header, rows


def decision_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "scores", "unit"] + [c for c, _ in DECISION_COLUMNS]
    rows = []
    for e in entries:
        d = e.metrics.get("decisions", {})
        unit = d.get("unit", "")
        vals = d.get(unit, {})
        cells = []
        for name, key in DECISION_COLUMNS:
            v = vals.get(key)
            cells.append("–" if v is None else (f"{v:.2f}" if key == "mean_predicted_set_size"
                                                  else _pct(v)))
        rows.append([e.run if e.run == e.model else f"{e.run} [{e.model}]", e.head,
                     SHORT_UNIT.get(unit, unit)] + cells)
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A fixed-width table for a terminal."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines) + "\n"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i < 3 and not _numeric_col(rows, i) else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _numeric_col(rows: list[list[str]], i: int) -> bool:
    return bool(rows) and all(re.fullmatch(r"[0-9.–-]+", r[i]) for r in rows)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f"<td class='{'num' if _numeric_col(rows, i) else ''}'>{html.escape(c)}</td>"
            for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


# --- plots ---------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11,
                         "legend.fontsize": 9, "figure.dpi": 100})
    return plt


def _evaluated_classes(entries: list[Entry]) -> list[int]:
    """Classes with at least one positive test clip (the others have no AP)."""
    labels = entries[0].test_labels
    return [c for c in range(labels.shape[1]) if labels[:, c].any()]


def plot_per_class_ap(entries: list[Entry], out: Path) -> Path:
    """Grouped bars: per-class test AP (per video) of every entry, classes along x."""
    plt = _plt()
    classes = _evaluated_classes(entries)
    n = len(entries)
    width = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(max(10.0, 0.17 * len(classes) * n + 3), 6))
    cmap = plt.get_cmap("tab10")
    x = np.arange(len(classes))
    for i, e in enumerate(entries):
        ap = np.asarray([v if v is not None else np.nan
                         for v in _get(e.metrics, ("test", "video", "map", "per_item"))],
                        dtype=float)
        ax.bar(x + (i - (n - 1) / 2) * width, 100 * ap[classes], width=width,
               color=cmap(i % 10), label=e.label)
    ax.set_xticks(x, [CLASSES[c] for c in classes], rotation=35, ha="right")
    ax.set_xlim(-0.6, len(classes) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel("AP on composite test clips (%)")
    ax.set_title("Per-class average precision (test, per video)", pad=38)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(n, 3), frameon=False)
    fig.tight_layout()
    save_figure_png(fig, out, bbox_inches="tight")
    return out


def plot_pr_curves(entries: list[Entry], out: Path) -> Path:
    """Micro-averaged precision-recall curves (all evaluated classes pooled), one per entry."""
    plt = _plt()
    classes = _evaluated_classes(entries)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    cmap = plt.get_cmap("tab10")
    for i, e in enumerate(entries):
        s = e.test_scores[:, classes]
        y = e.test_labels[:, classes]
        r, p = M.pr_curve(s, y)
        ap = float(np.sum(np.diff(r) * p[1:]))
        ax.step(r, p, where="post", color=cmap(i % 10), lw=1.8,
                label=f"{e.label} (micro-AP {100 * ap:.1f})")
    base = float(e.test_labels[:, classes].mean()) if entries else 0.0
    ax.axhline(base, color="grey", ls=":", lw=1, label=f"chance ({100 * base:.1f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision–recall, test clips × error classes (micro-average)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    save_figure_png(fig, out)
    return out


def plot_pr_per_class(entry: Entry, out: Path) -> Path:
    """Small multiples: one precision-recall curve per evaluated class for one entry."""
    plt = _plt()
    classes = _evaluated_classes([entry])
    cols = 4
    rows = int(np.ceil(len(classes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False,
                             sharex=True, sharey=True)
    per = _get(entry.metrics, ("test", "video", "map", "per_item"))
    for ax, c in zip(axes.ravel(), classes):
        r, p = M.pr_curve(entry.test_scores[:, c], entry.test_labels[:, c])
        ax.step(r, p, where="post", lw=1.6)
        ax.axhline(entry.test_labels[:, c].mean(), color="grey", ls=":", lw=1)
        ax.set_title(f"{CLASSES[c]}\nAP {_pct(per[c])}", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(classes):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    # The lowest drawn panel of each column carries the recall axis (with shared x, the panels
    # above an empty slot would otherwise have no tick labels).
    for j in range(cols):
        used = [i for i in range(rows) if i * cols + j < len(classes)]
        if used:
            ax = axes[used[-1], j]
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("recall")
    fig.suptitle(f"Per-class precision–recall (test, per video): {entry.label}\n"
                 "dotted line: share of test clips with the class (chance)", fontsize=13)
    fig.tight_layout()
    save_figure_png(fig, out)
    return out


def plot_cooccurrence(entry: Entry, out: Path) -> Path:
    """Heat map: row = true error, column = predicted class; cell = share of the clips with that
    true error whose predicted set contains the column's class (diagonal = recall)."""
    plt = _plt()
    counts, rate = M.cooccurrence(entry.pred, entry.true)
    c = rate.shape[0]
    fig, ax = plt.subplots(figsize=(10, 8.6))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")  # grey: no clip has that error
    im = ax.imshow(np.ma.masked_invalid(rate), vmin=0, vmax=1, cmap=cmap)
    names = list(CLASSES[:c])
    ax.set_xticks(range(c), names, rotation=45, ha="right")
    ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted class (in the predicted set)")
    ax.set_ylabel("true error (in the true set)")
    for i in range(c):
        for j in range(c):
            if np.isfinite(rate[i, j]) and counts[i, j] > 0:
                ax.text(j, i, f"{rate[i, j]:.2f}".lstrip("0") if rate[i, j] < 1 else "1",
                        ha="center", va="center", fontsize=8,
                        color="black" if rate[i, j] > 0.6 else "white")
    for i in np.flatnonzero(~np.isfinite(rate).any(axis=1)):
        ax.text((c - 1) / 2, i, "no test clip has this class", ha="center", va="center",
                fontsize=9, color="#444")
    unit = UNIT_NAMES.get(entry.metrics.get("decisions", {}).get("unit", ""), "")
    ax.set_title(f"Predicted vs true errors ({unit}; val thresholds)\n{entry.label}")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("share of clips with the true error")
    fig.tight_layout()
    save_figure_png(fig, out)
    return out


def plot_map_by_errors(entries: list[Entry], out: Path) -> Path:
    """Grouped bars: test mAP (per video) for clips with 2, 3 and 4 errors."""
    plt = _plt()
    groups = ("2", "3", "4")
    fig, ax = plt.subplots(figsize=(8, 4.8))
    cmap = plt.get_cmap("tab10")
    n = len(entries)
    w = 0.8 / max(n, 1)
    x = np.arange(len(groups))
    for i, e in enumerate(entries):
        vals = [_get(e.metrics, ("test", "video", "by_errors", g, "map")) for g in groups]
        vals = [np.nan if v is None else 100 * v for v in vals]
        ax.bar(x + (i - (n - 1) / 2) * w, vals, width=w, color=cmap(i % 10), label=e.label)
    ns = [_get(entries[0].metrics, ("test", "video", "by_errors", g, "n")) or 0 for g in groups]
    ax.set_xticks(x, [f"{g} errors\n({n} clips)" for g, n in zip(groups, ns)])
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Test mAP by number of errors in the clip (per video)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    save_figure_png(fig, out, bbox_inches="tight")
    return out


# --- the pages ------------------------------------------------------------------------------

def best_entry(entries: list[Entry]) -> Entry:
    """The entry with the highest view-fused (mean) test mAP; plots of one entry use it."""
    def key(e: Entry) -> float:
        v = _get(e.metrics, ("test", "take_mean", "map", "value"))
        return -1.0 if v is None else v
    return max(entries, key=key)


def write_report(entries: list[Entry], report_dir: str | Path, notes: list[str] | None = None,
                 command: str = "") -> dict[str, Path]:
    """Write report.md, report.html and the PNGs into ``report_dir``; returns their paths."""
    if not entries:
        raise ValueError("no evaluated runs to report")
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Plots of runs that are gone must not linger; only names this module writes are removed.
    for pattern in ("per_class_ap.png", "map_by_errors.png", "pr_curves.png",
                    "pr_per_class-*.png", "cooccurrence-*.png"):
        for old in out.glob(pattern):
            old.unlink()
    pngs: dict[str, Path] = {}
    pngs["per_class_ap"] = plot_per_class_ap(entries, out / "per_class_ap.png")
    pngs["map_by_errors"] = plot_map_by_errors(entries, out / "map_by_errors.png")
    pngs["pr_curves"] = plot_pr_curves(entries, out / "pr_curves.png")
    best = best_entry(entries)
    pngs["pr_per_class"] = plot_pr_per_class(best, out / f"pr_per_class-{best.slug}.png")
    for e in entries:
        pngs[f"cooccurrence-{e.slug}"] = plot_cooccurrence(e, out / f"cooccurrence-{e.slug}.png")

    header, rows = comparison_rows(entries)
    dheader, drows = decision_rows(entries)
    first = entries[0].metrics
    skipped = _get(first, ("test", "video", "map", "skipped")) or []
    policy = _get(first, ("test", "video", "map", "policy"))
    n_test = _get(first, ("test", "video", "map", "n_rows"))
    n_takes = _get(first, ("test", "take_mean", "map", "n_rows"))
    thr = first.get("thresholds", {})
    ap_note = (
        f"AP in %, test split (composite-error clips): {n_test} videos, {n_takes} takes. "
        f"mAP = AP per class averaged over classes; MMIT mAP = AP per clip over its 14 class "
        f"scores, averaged over clips. Fused = the views of one take pooled (mean or max) and "
        f"evaluated per take. By-error columns are per video. Classes without a positive test "
        f"clip are handled by policy '{policy}' "
        f"({len(skipped)} left out: {', '.join(CLASSES[k] for k in skipped) or 'none'}).")
    dec_note = (
        f"Decisions: per-class thresholds chosen on the val split ({thr.get('rule_text', '')}; "
        f"val scores fused '{thr.get('fusion', '')}' per take), applied to test "
        f"({first.get('decisions', {}).get('unit', '')}). A predicted set is every class at or "
        f"above its threshold; 'exact set' = predicted set equals the true set.")
    notes = list(notes or [])
    by_warning: dict[str, list[str]] = {}
    for e in entries:
        for w in e.warnings:
            runs = by_warning.setdefault(w, [])
            if e.run not in runs:
                runs.append(e.run)
    notes.extend(f"{', '.join(runs)}: {w}" for w, runs in by_warning.items())

    sections = [
        ("Model comparison", "table", (header, rows), ap_note),
        ("Decisions on the predicted error sets", "table", (dheader, drows), dec_note),
        ("Per-class AP", "img", "per_class_ap", ""),
        ("mAP by number of errors", "img", "map_by_errors", ""),
        ("Precision–recall curves", "img", "pr_curves", ""),
        (f"Per-class precision–recall: {best.label}", "img", "pr_per_class",
         "The entry with the best view-fused (mean) mAP."),
    ]
    for e in entries:
        sections.append((f"Predicted vs true errors: {e.label}", "img", f"cooccurrence-{e.slug}",
                         "Row: clips whose true set has that error; column: share of them whose "
                         "predicted set has that class. The diagonal is per-class recall; "
                         "off-diagonal cells are confusions."))
    by_view = _view_table(entries)
    if by_view:
        sections.insert(2, ("mAP per camera view (test, per video)", "table", by_view, ""))

    md = ["# CPR-CLIP evaluation report", ""]
    if command:
        md += [f"Produced by `{command}`.", ""]
    for n in notes:
        md += [f"> **Warning:** {n}", ""]
    hp = ["<!doctype html><html><head><meta charset='utf-8'><title>CPR-CLIP evaluation report"
          "</title><style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;"
          "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
          "th,td{border:1px solid #ccc;padding:4px 8px}th{background:#f0f0f0}td.num{text-align:"
          "right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #eee}"
          ".warn{background:#fff3cd;padding:.5em 1em;border-left:4px solid #e0a800}"
          "p.note{color:#555;font-size:14px}</style></head><body>",
          "<h1>CPR-CLIP evaluation report</h1>"]
    if command:
        hp.append(f"<p>Produced by <code>{html.escape(command)}</code>.</p>")
    for n in notes:
        hp.append(f"<p class='warn'><b>Warning:</b> {html.escape(n)}</p>")
    for title, kind, payload, note in sections:
        md += [f"## {title}", ""]
        hp.append(f"<h2>{html.escape(title)}</h2>")
        if kind == "table":
            md += [markdown_table(*payload)]
            hp.append(html_table(*payload))
        else:
            path = pngs[payload]
            md += [f"![{title}]({path.name})", ""]
            b64 = base64.b64encode(path.read_bytes()).decode("ascii")
            hp.append(f"<img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>")
        if note:
            md += [note, ""]
            hp.append(f"<p class='note'>{html.escape(note)}</p>")
    hp.append("</body></html>")
    paths = {"md": out / "report.md", "html": out / "report.html", **pngs}
    write_atomic(paths["md"], "\n".join(md))
    write_atomic(paths["html"], "\n".join(hp))
    log.info("report written to %s (%d plots)", out, len(pngs))
    return paths


def _view_table(entries: list[Entry]) -> tuple[list[str], list[list[str]]] | None:
    views = sorted({v for e in entries for v in (_get(e.metrics, ("test", "video", "by_view")) or {})},
                   key=lambda s: int(s) if str(s).isdigit() else s)
    if not views:
        return None
    header = ["model", "scores"] + [f"view {v} mAP" for v in views] + [f"view {v} MMIT" for v in views]
    rows = []
    for e in entries:
        bv = _get(e.metrics, ("test", "video", "by_view")) or {}
        rows.append([e.run if e.run == e.model else f"{e.run} [{e.model}]", e.head]
                    + [_pct(_get(bv, (v, "map"))) for v in views]
                    + [_pct(_get(bv, (v, "mmit_map"))) for v in views])
    return header, rows
