"""The evaluation report: one folder with ``report.md``, a self-contained ``report.html`` (PNGs
embedded as base64) and the PNGs themselves.

Input is a list of :class:`Entry` — one per (run, score head): the head's metrics dict (as
written to ``metrics.json`` by :mod:`evaluate.runner`) plus the test arrays the plots need.
Everything here is presentation; the numbers come from :mod:`evaluate.metrics` and, for what
the assistant tells users, from :func:`evaluate.decide.decide` (via the runner).

The page reads top-down for a person: a summary in plain words (the best model, what it finds
and what it misses), where the models came from, then the tables and plots that back it.
"""
from __future__ import annotations

import base64
import html
import logging
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluate import metrics as M
from pipeline.atomic import save_figure_png, write_atomic
from pipeline.taxonomy import CLASSES

log = logging.getLogger(__name__)

HEAD_NAMES = {"clip": "prompt similarity", "bce": "BCE head", "clip_sets": "label-set prompts"}
SHORT_UNIT = {"video": "video", "take_mean": "take (mean)", "take_max": "take (max)"}
UNIT_NAMES = {"video": "per video", "take_mean": "per take, views averaged",
              "take_max": "per take, views max-pooled"}
GLOSSARY = [
    ("AP", "average precision: the area under one class's precision–recall curve; a model "
           "that ranks at random scores about the share of clips with the class (its chance "
           "level)."),
    ("mAP", "AP of each error class over the test clips, averaged over the classes: how well "
            "the model ranks clips for one error at a time."),
    ("MMIT mAP", "AP of each test clip over its 14 class scores, averaged over the clips (the "
                 "Multi-Moments-in-Time sample mAP): how well the model ranks the errors inside "
                 "one clip."),
    ("precision / recall / F1", "of the errors the assistant reports: precision = share of "
                                "reported errors that are real, recall = share of real errors "
                                "reported, F1 = their harmonic mean. 'Micro' pools every take."),
    ("ECE", "expected calibration error: the gap between the stated probability and how often "
            "the error is really there, averaged over 10 probability bins (0 = perfectly "
            "calibrated)."),
    ("not sure / unsuitable", "verdicts of the assistant: no error reached its mark but one came "
                              "close, or 'Correct' was not likely enough; the video does not "
                              "look like the chest compressions the model knows."),
]


@dataclass
class Entry:
    """One row of the comparison: a run scored by one head.

    ``test_scores``/``test_labels`` are per-video (N, C); ``pred``/``true`` are the (K, C) 0/1
    sets the assistant tells and the true ones, per decision unit (takes after view fusion, by
    default). The optional rest comes from :class:`evaluate.runner.HeadResult`:
    ``unit_scores`` (K, C) raw, ``unit_probs`` (K, C) calibrated, ``verdicts`` (K,),
    ``unit_ids`` (K,), ``op`` (the operating point), ``provenance`` and ``ood`` (the run's),
    ``unit_ratio`` (K,) the input check's ratio.
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
    unit_scores: np.ndarray | None = None
    unit_probs: np.ndarray | None = None
    verdicts: list[str] | None = None
    unit_ids: np.ndarray | None = None
    op: Any = None
    provenance: dict | None = None
    ood: dict | None = None
    unit_ratio: np.ndarray | None = None
    # {take id: (T, h, w, 3) uint8} frames of the example takes (evaluate.runner fills them)
    example_frames: dict[str, np.ndarray] | None = None

    @property
    def label(self) -> str:
        name = self.run if self.run == self.model else f"{self.run} [{self.model}]"
        return f"{name} · {self.head}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.run}-{self.head}")

    @property
    def decisions(self) -> dict:
        d = self.metrics.get("decisions", {})
        return d.get(d.get("unit", ""), {})

    @property
    def ranked_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels) of the decision units when known, else per video."""
        if self.unit_scores is not None:
            return self.unit_scores, self.true
        return self.test_scores, self.test_labels


# --- tables ---------------------------------------------------------------------------------

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
VERDICT_COLUMNS = [("errors", "errors"), ("not sure", "not_sure"), ("unsuitable", "unsuitable"),
                   ("said correct", "correct")]


def _get(d: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _pct(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def _num(v, fmt: str = ".3f") -> str:
    return "–" if v is None or not np.isfinite(v) else format(v, fmt)


def _model(e: Entry) -> str:
    return e.run if e.run == e.model else f"{e.run} [{e.model}]"


def comparison_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """Header and string cells of the model comparison (AP in %)."""
    header = ["model", "scores"] + [c for c, _ in TABLE_COLUMNS]
    rows = []
    for e in entries:
        rows.append([_model(e), e.head] + [_pct(_get(e.metrics, p)) for _, p in TABLE_COLUMNS])
    return header, rows


def decision_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """What the assistant tells users on the test takes: its rule, set metrics, verdicts."""
    header = (["model", "scores", "unit", "rule"] + [c for c, _ in DECISION_COLUMNS]
              + [c for c, _ in VERDICT_COLUMNS])
    rows = []
    for e in entries:
        d = e.metrics.get("decisions", {})
        unit = d.get("unit", "")
        vals = d.get(unit, {})
        cells = []
        for _, key in DECISION_COLUMNS:
            v = vals.get(key)
            cells.append("–" if v is None else (f"{v:.2f}" if key == "mean_predicted_set_size"
                                                  else _pct(v)))
        verdicts = vals.get("verdicts") or {}
        cells += [str(verdicts.get(k, "–")) for _, k in VERDICT_COLUMNS]
        rows.append([_model(e), e.head, SHORT_UNIT.get(unit, unit), str(d.get("rule", "–"))]
                    + cells)
    return header, rows


def rule_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """The candidate rules of each entry on val (imagined composites + singles), the kept one
    marked."""
    header = ["model", "scores", "rule", "kept", "P micro", "R micro", "F1 micro", "exact set",
              "not sure", "said correct with an error"]
    rows = []
    for e in entries:
        r = e.metrics.get("rules") or {}
        for row in r.get("rows", []):
            v = row.get("verdicts", {})
            n = max(1, sum(v.values()))
            rows.append([_model(e), e.head, row["rule"], "✓" if row["rule"] == r.get("chosen") else "",
                         _pct(row["precision_micro"]), _pct(row["recall_micro"]),
                         _pct(row["f1_micro"]), _pct(row["exact_set_accuracy"]),
                         _pct(v.get("not_sure", 0) / n), str(row.get("false_all_clear", 0))])
    return header, rows


def per_class_rows(entry: Entry) -> tuple[list[str], list[list[str]]]:
    """Per-class P/R/F1 of what the assistant tells (its operating point), AP and chance AP."""
    header = ["class", "test takes with it", "reported", "precision", "recall", "F1", "AP",
              "chance AP"]
    pc = entry.metrics.get("decisions", {}).get("per_class")
    if not pc:
        return header, []
    rows = []
    for c in range(1, len(CLASSES)):
        if not pc["support"][c] and not pc["predicted"][c]:
            continue
        rows.append([CLASSES[c], str(pc["support"][c]), str(pc["predicted"][c]),
                     _pct(pc["precision"][c]), _pct(pc["recall"][c]), _pct(pc["f1"][c]),
                     _pct(pc["ap"][c]), _pct((pc.get("chance_ap") or [None] * len(CLASSES))[c])])
    return header, rows


def calibration_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "scores", "method", "ECE val", "ECE test", "ECE test, raw scores",
              "classes without calibration"]
    rows = []
    for e in entries:
        c = e.metrics.get("calibration") or {}
        rows.append([_model(e), e.head, str(c.get("method") or "none"),
                     _num(_get(c, ("val", "ece"))), _num(_get(c, ("test", "ece"))),
                     _num(_get(c, ("test_raw", "ece"))),
                     ", ".join(c.get("uncalibrated_classes") or []) or "none"])
    return header, rows


def provenance_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "model", "trained", "code", "backbone", "init", "features of", "seed",
              "checkpoint sha256"]
    rows, seen = [], set()
    for e in entries:
        p = e.provenance
        if not p or e.run in seen:
            continue
        seen.add(e.run)
        rows.append([e.run, e.model, p.get("trained", ""), p.get("code_version", "") or "?",
                     p.get("backbone", ""), p.get("init", ""),
                     p.get("dataset", "") + (" (synthetic)" if p.get("synthetic") else ""),
                     str(p.get("seed", "")), (p.get("checkpoint_sha256") or "")[:12]])
    return header, rows


def ood_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "nearest", "limit from", "limits", "slack", "val videos flagged",
              "test videos flagged", "largest test ratio"]
    rows, seen = [], set()
    for e in entries:
        o = e.ood
        if not o or e.run in seen or "limits" not in o:
            continue
        seen.add(e.run)
        rows.append([e.run, f"k={o['k']}", f"{o['limit_source']} q{o['quantile']:g}",
                     ", ".join(f"{m} {v:.3f}" for m, v in o["limits"].items()),
                     f"{o['slack']:g}", _pct(o.get("val_flagged")),
                     _pct(o.get("test_flagged_videos")), _num(o.get("test_ratio_max"), ".2f")])
    return header, rows


def read_zeroshot(runs_dir: str | Path) -> list[tuple[str, dict]]:
    """``(run name, zeroshot.json)`` of the narration-pretraining runs under ``runs_dir``
    (``cprclip train task=narration``), sorted by name; a file that cannot be read is skipped
    with a warning naming it."""
    found = []
    for path in sorted(Path(runs_dir).glob("*/zeroshot.json")):
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("val"), dict):
                raise ValueError("no 'val' figures")
        except (OSError, ValueError) as e:
            log.warning("%s: not a zero-shot result, left out of the report (%s)", path, e)
            continue
        found.append((path.parent.name, data))
    return found


def zeroshot_rows(entries: list[Entry], zeroshot: list[tuple[str, dict]]
                  ) -> tuple[list[str], list[list[str]]]:
    """Zero-shot recognition after narration pretraining, beside the supervised models: the
    same composite test mAP (per video and fused), plus the single-class figures the
    supervised models do not have (their training data are those clips' people's peers)."""
    header = ["run", "trained with", "streams", "CPR labels upstream", "single-class top-1",
              "macro F1", "top-1, views fused", "mAP", "mAP fused-mean"]
    rows = []
    for name, z in zeroshot:
        val, test = z.get("val") or {}, z.get("test") or {}
        upstream = z.get("streams_trained_with_labels") or []
        rows.append([name, "narrations (zero-shot)", ", ".join(z.get("modalities") or []) or "–",
                     ", ".join(upstream) if upstream else "none", _pct(val.get("top1")),
                     _pct(val.get("macro_f1")), _pct(val.get("take_top1")), _pct(test.get("mAP")),
                     _pct(test.get("mAP_fused"))])
    for e in entries:
        rows.append([_model(e) + f" · {e.head}", "class labels", "–", "–", "–", "–", "–",
                     _pct(_get(e.metrics, ("test", "video", "map", "value"))),
                     _pct(_get(e.metrics, ("test", "take_mean", "map", "value")))])
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
    align = ["---:" if _numeric_col(rows, i) else "---" for i in range(len(header))]
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
    # the wrapper scrolls a wide table sideways on a phone instead of squeezing the page
    return f"<div class='scroll'><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>"


# --- the summary ----------------------------------------------------------------------------

def best_entry(entries: list[Entry]) -> Entry:
    """The entry whose decisions earn the best micro F1 on the test takes (what users get);
    ties go to the higher view-fused (mean) mAP."""
    def key(e: Entry) -> tuple[float, float]:
        f1 = e.decisions.get("f1_micro")
        v = _get(e.metrics, ("test", "take_mean", "map", "value"))
        if v is None:
            v = _get(e.metrics, ("test", "video", "map", "value"))
        return (-1.0 if f1 is None else f1, -1.0 if v is None else v)
    return max(entries, key=key)


def _names(ids: list[int]) -> str:
    names = [CLASSES[c] for c in ids]
    if not names:
        return "none"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def summary_lines(entries: list[Entry]) -> list[str]:
    """The report's first paragraph, in plain words."""
    best = best_entry(entries)
    d = best.decisions
    out = []
    n_units = d.get("n")
    unit = best.metrics.get("decisions", {}).get("unit", "")
    what = "takes" if unit.startswith("take") else "videos"
    fused = _get(best.metrics, ("test", "take_mean", "map", "value"))
    out.append(f"Best model on the {n_units} composite-error test {what}: **{best.label}** "
               f"(decision rule '{best.metrics.get('decisions', {}).get('rule', '?')}'"
               + (f", fused mAP {_pct(fused)}%" if fused is not None else "") + ").")
    true = np.asarray(best.true).astype(bool)
    pred = np.asarray(best.pred).astype(bool)
    n_true = int(true[:, 1:].sum())
    tp = int((true[:, 1:] & pred[:, 1:]).sum())
    fp = int(pred[:, 1:].sum()) - tp
    if n_true:
        out.append(f"Of the {n_true} errors in these {what}, the assistant reports {tp} "
                   f"(recall {_pct(d.get('recall_micro'))}%); {fp} of the errors it reports are "
                   f"not there (precision {_pct(d.get('precision_micro'))}%); it names the exact "
                   f"set of errors in {_pct(d.get('exact_set_accuracy'))}% of the {what}.")
    pc = best.metrics.get("decisions", {}).get("per_class")
    if pc:
        have = [c for c in range(1, len(CLASSES)) if pc["support"][c]]
        good = [c for c in have if pc["recall"][c] >= 0.6 and pc["precision"][c] >= 0.5]
        missed = [c for c in have if pc["recall"][c] < 1 / 3]
        out.append(f"It finds well (recall ≥ 60 %, precision ≥ 50 %): {_names(good)}. "
                   f"It mostly misses (found in fewer than 1 in 3 {what} that have it): "
                   f"{_names(missed)}.")
        weakest = sorted(have, key=lambda c: pc["recall"][c])[:3]
        wrong = {c: pc["predicted"][c] - round(pc["precision"][c] * pc["predicted"][c])
                 for c in range(1, len(CLASSES))}
        alarms = [c for c in sorted(wrong, key=lambda c: -wrong[c]) if wrong[c] > 0][:3]
        if weakest:
            out.append("Least often found: " + ", ".join(
                f"{CLASSES[c]} ({_pct(pc['recall'][c])}%)" for c in weakest) + ". "
                + ("Most false alarms: " + ", ".join(
                    f"{CLASSES[c]} ({wrong[c]} of {pc['predicted'][c]} reports wrong)"
                    for c in alarms) + "." if alarms else "No false alarms."))
    v = d.get("verdicts") or {}
    if v:
        out.append(f"Verdicts: errors listed for {v.get('errors', 0)}, 'not sure' for "
                   f"{v.get('not_sure', 0)}, 'unsuitable video' for {v.get('unsuitable', 0)}, "
                   f"and 'correct' for {v.get('correct', 0)} — every test {what[:-1]} has an "
                   f"error, so each 'correct' here is a false all-clear.")
    ece = _get(best.metrics, ("calibration", "test", "ece"))
    if ece is not None:
        out.append(f"Its stated probabilities are calibrated on val; on test their expected "
                   f"calibration error is {ece:.3f} (0 = the probabilities match how often the "
                   f"errors are there).")
    if any((e.provenance or {}).get("synthetic") for e in entries):
        out.append("All figures are on synthetic video: how the models do on real people "
                   "has not been measured.")
    return out


EXAMPLE_KINDS = ("hit", "miss", "false alarm")


def pick_examples(entry: Entry, per_kind: int = 2) -> list[tuple[str, int]]:
    """``(kind, unit index)`` of a few test takes: hits (the exact set told), misses (a real
    error not told; most missed first) and false alarms (an error told that is not there)."""
    if entry.unit_ids is None or entry.verdicts is None:
        return []
    true, pred = np.asarray(entry.true).astype(bool), np.asarray(entry.pred).astype(bool)
    missed = (true[:, 1:] & ~pred[:, 1:]).sum(axis=1)
    extra = (pred[:, 1:] & ~true[:, 1:]).sum(axis=1)
    kinds = {
        "hit": [i for i in range(len(true)) if (true[i, 1:] == pred[i, 1:]).all()],
        "miss": sorted(np.flatnonzero(missed > 0).tolist(), key=lambda i: -missed[i]),
        "false alarm": sorted(np.flatnonzero(extra > 0).tolist(), key=lambda i: -extra[i]),
    }
    out: list[tuple[str, int]] = []
    for kind in EXAMPLE_KINDS:
        out += [(kind, int(i)) for i in kinds[kind][:per_kind]]
    return out


def _example_text(entry: Entry, i: int) -> tuple[str, str, str]:
    """(true errors, errors told, verdict) of unit ``i`` in words."""
    true, pred = np.asarray(entry.true), np.asarray(entry.pred)
    return (", ".join(CLASSES[c] for c in np.flatnonzero(true[i]) if c) or "none",
            ", ".join(CLASSES[c] for c in np.flatnonzero(pred[i]) if c) or "no error",
            entry.verdicts[i].replace("_", " "))


def example_rows(entry: Entry, per_kind: int = 2) -> tuple[list[str], list[list[str]]]:
    """The example takes of :func:`pick_examples` with what the assistant said."""
    header = ["kind", "take", "true errors", "assistant said", "verdict"]
    rows = []
    for kind, i in pick_examples(entry, per_kind):
        rows.append([kind, str(entry.unit_ids[i]), *_example_text(entry, i)])
    return header, rows


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
    """Grouped bars: per-class test AP (per video) of every entry, classes along x; a black
    tick per class marks its chance level (the share of test clips with the class)."""
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
    chance = 100 * entries[0].test_labels[:, classes].mean(axis=0)
    ax.hlines(chance, x - 0.45, x + 0.45, colors="black", lw=2, label="chance (share of clips)")
    ax.set_xticks(x, [CLASSES[c] for c in classes], rotation=35, ha="right")
    ax.set_xlim(-0.6, len(classes) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel("AP on composite test clips (%)")
    ax.set_title("Per-class average precision (test, per video)", pad=38)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(n + 1, 3), frameon=False)
    fig.tight_layout()
    save_figure_png(fig, out, bbox_inches="tight")
    return out


def plot_pr_curves(entries: list[Entry], out: Path) -> Path:
    """Micro-averaged precision-recall curves (decision units × evaluated classes pooled), one
    per entry, each with its operating point (what the assistant tells) marked."""
    plt = _plt()
    classes = _evaluated_classes(entries)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    cmap = plt.get_cmap("tab10")
    base = 0.0
    for i, e in enumerate(entries):
        scores, labels = e.ranked_scores
        s, y = scores[:, classes], labels[:, classes]
        r, p = M.pr_curve(s, y)
        ap = float(np.sum(np.diff(r) * p[1:]))
        ax.step(r, p, where="post", color=cmap(i % 10), lw=1.8,
                label=f"{e.label} (micro-AP {100 * ap:.1f})")
        d = e.decisions
        if d.get("recall_micro") is not None:
            ax.plot(d["recall_micro"], d["precision_micro"], marker="o", ms=9, mfc="white",
                    mec=cmap(i % 10), mew=2.5, ls="none")
        base = float(y.mean())
    ax.axhline(base, color="grey", ls=":", lw=1, label=f"chance ({100 * base:.1f})")
    ax.plot([], [], marker="o", ms=9, mfc="white", mec="black", mew=2.5, ls="none",
            label="operating point (the assistant's rule)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision–recall, test takes × error classes (micro-average)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    save_figure_png(fig, out)
    return out


def plot_pr_per_class(entry: Entry, out: Path) -> Path:
    """Small multiples: one precision-recall curve per evaluated class for one entry, with the
    operating point and the chance level."""
    plt = _plt()
    classes = _evaluated_classes([entry])
    scores, labels = entry.ranked_scores
    cols = 4
    rows = int(np.ceil(len(classes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False,
                             sharex=True, sharey=True)
    pc = entry.metrics.get("decisions", {}).get("per_class") or {}
    ap = M.average_precision(scores, labels)
    for ax, c in zip(axes.ravel(), classes):
        r, p = M.pr_curve(scores[:, c], labels[:, c])
        ax.step(r, p, where="post", lw=1.6)
        ax.axhline(labels[:, c].mean(), color="grey", ls=":", lw=1)
        if pc:
            ax.plot(pc["recall"][c], pc["precision"][c], marker="o", ms=7, mfc="white",
                    mec="C3", mew=2, ls="none")
        ax.set_title(f"{CLASSES[c]}\nAP {_pct(ap[c])}", fontsize=10)
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
    unit = UNIT_NAMES.get(entry.metrics.get("decisions", {}).get("unit", ""), "per video")
    fig.suptitle(f"Per-class precision–recall (test, {unit}): {entry.label}\n"
                 "circle: the assistant's operating point; dotted line: chance (share of takes "
                 "with the class)", fontsize=12)
    fig.tight_layout()
    save_figure_png(fig, out)
    return out


def plot_cooccurrence(entry: Entry, out: Path) -> Path:
    """Heat map with counts: row = true error, column = error told; a cell is the number of
    takes with the row's error whose told set has the column's (colour: that share)."""
    plt = _plt()
    counts, rate = M.cooccurrence(entry.pred, entry.true)
    c = rate.shape[0]
    fig, ax = plt.subplots(figsize=(10, 8.6))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")  # grey: no take has that error
    im = ax.imshow(np.ma.masked_invalid(rate), vmin=0, vmax=1, cmap=cmap)
    names = list(CLASSES[:c])
    ax.set_xticks(range(c), names, rotation=45, ha="right")
    ax.set_yticks(range(c), names)
    ax.set_xlabel("error the assistant told (in the told set)")
    ax.set_ylabel("true error (in the true set)")
    for i in range(c):
        for j in range(c):
            if np.isfinite(rate[i, j]) and counts[i, j] > 0:
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=9,
                        color="black" if rate[i, j] > 0.6 else "white")
    for i in np.flatnonzero(~np.isfinite(rate).any(axis=1)):
        ax.text((c - 1) / 2, i, "no test take has this class", ha="center", va="center",
                fontsize=9, color="#444")
    d = entry.metrics.get("decisions", {})
    unit = UNIT_NAMES.get(d.get("unit", ""), "")
    ax.set_title(f"Errors told vs true errors ({unit}; rule '{d.get('rule', '')}')\n{entry.label}")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("share of the takes with the true error (diagonal: recall)")
    fig.tight_layout()
    save_figure_png(fig, out)
    return out


def plot_reliability(entry: Entry, out: Path) -> Path:
    """Reliability diagram of the calibrated probabilities: per bin, mean stated probability
    against how often the error is there, on val and on test; the diagonal is perfect."""
    plt = _plt()
    cal = entry.metrics.get("calibration") or {}
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="perfectly calibrated")
    for key, colour, name in (("val", "C0", "val (imagined composites + singles)"),
                              ("test", "C3", "test takes, error classes")):
        b = cal.get(key, {}).get("bins")
        if not b:
            continue
        n = np.asarray(b["count"], dtype=float)
        mp = np.asarray([np.nan if v is None else v for v in b["mean_prob"]], dtype=float)
        fr = np.asarray([np.nan if v is None else v for v in b["frequency"]], dtype=float)
        ok = n > 0
        ax.plot(mp[ok], fr[ok], marker="o", color=colour,
                label=f"{name}: ECE {_num(cal[key].get('ece'))}")
        for x, y, k in zip(mp[ok], fr[ok], n[ok]):
            ax.annotate(f"{int(k)}", (x, y), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=colour)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("stated probability (bin mean)")
    ax.set_ylabel("share of cases where the error is there")
    ax.set_title(f"Calibration: {entry.label}\n(numbers: predictions in each bin)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_figure_png(fig, out)
    return out


def plot_examples(entry: Entry, out: Path) -> Path | None:
    """One row per example take that has frames: its sampled frames (one view), with what is
    true and what the assistant told above them. None when no example has frames."""
    frames = entry.example_frames or {}
    picks = [(k, i) for k, i in pick_examples(entry) if str(entry.unit_ids[i]) in frames]
    if not picks:
        return None
    plt = _plt()
    t = max(len(frames[str(entry.unit_ids[i])]) for _, i in picks)
    h, w = frames[str(entry.unit_ids[picks[0][1]])].shape[1:3]
    # each row: t frames of 2.2 in wide at their own aspect, plus three lines of caption
    fig, axes = plt.subplots(len(picks), t, squeeze=False,
                             figsize=(2.2 * t, len(picks) * (2.2 * h / w + 0.75)),
                             gridspec_kw={"wspace": 0.03})
    for row, (kind, i) in enumerate(picks):
        take = str(entry.unit_ids[i])
        true, told, verdict = _example_text(entry, i)
        for j, ax in enumerate(axes[row]):
            ax.axis("off")
            if j < len(frames[take]):
                ax.imshow(frames[take][j])
        axes[row, 0].set_title(f"{kind}: {take} ({verdict})\ntrue: {true}\ntold: {told}",
                               loc="left", fontsize=9)
    save_figure_png(fig, out, bbox_inches="tight")
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

_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;"
        "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
        "th,td{border:1px solid #ccc;padding:4px 8px}th{background:#f0f0f0}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums}"
        "div.scroll{overflow-x:auto;max-width:100%}img{max-width:100%;height:auto;"
        "border:1px solid #eee}.warn{background:#fff3cd;padding:.5em 1em;"
        "border-left:4px solid #e0a800}.summary{background:#eef6ee;padding:.6em 1.2em;"
        "border-left:4px solid #3a7d44}p.note{color:#555;font-size:14px}"
        "dl.glossary dt{font-weight:bold}dl.glossary dd{margin:0 0 .4em 1em}"
        "@media (max-width:600px){body{margin:1em auto;padding:0 .6em}"
        "table{font-size:12px}th,td{padding:3px 4px}}")


def _md_inline(text: str) -> str:
    """The HTML of a Markdown line that uses only **bold**."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def write_report(entries: list[Entry], report_dir: str | Path, notes: list[str] | None = None,
                 command: str = "", zeroshot: list[tuple[str, dict]] | None = None
                 ) -> dict[str, Path]:
    """Write report.md, report.html and the PNGs into ``report_dir``; returns their paths.
    ``zeroshot``: :func:`read_zeroshot`'s narration runs, shown beside the models."""
    from pipeline.provenance import code_version

    if not entries:
        raise ValueError("no evaluated runs to report")
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Plots of runs that are gone must not linger; only names this module writes are removed.
    for pattern in ("per_class_ap.png", "map_by_errors.png", "pr_curves.png",
                    "pr_per_class-*.png", "cooccurrence-*.png", "reliability-*.png",
                    "examples-*.png"):
        for old in out.glob(pattern):
            old.unlink()
    best = best_entry(entries)
    pngs: dict[str, Path] = {}
    pngs["per_class_ap"] = plot_per_class_ap(entries, out / "per_class_ap.png")
    pngs["map_by_errors"] = plot_map_by_errors(entries, out / "map_by_errors.png")
    pngs["pr_curves"] = plot_pr_curves(entries, out / "pr_curves.png")
    pngs["pr_per_class"] = plot_pr_per_class(best, out / f"pr_per_class-{best.slug}.png")
    pngs["cooccurrence"] = plot_cooccurrence(best, out / f"cooccurrence-{best.slug}.png")
    if (best.metrics.get("calibration") or {}).get("test"):
        pngs["reliability"] = plot_reliability(best, out / f"reliability-{best.slug}.png")
    shown = plot_examples(best, out / f"examples-{best.slug}.png")
    if shown is not None:
        pngs["examples"] = shown

    first = entries[0].metrics
    skipped = _get(first, ("test", "video", "map", "skipped")) or []
    policy = _get(first, ("test", "video", "map", "policy"))
    n_test = _get(first, ("test", "video", "map", "n_rows"))
    n_takes = _get(first, ("test", "take_mean", "map", "n_rows"))
    ap_note = (
        f"AP in %, test split (composite-error clips): {n_test} videos, "
        f"{'unknown' if n_takes is None else n_takes} takes. Fused = the views of one take "
        f"pooled (mean or max) and evaluated per take. By-error columns are per video. Classes "
        f"without a positive test clip are handled by policy '{policy}' "
        f"({len(skipped)} left out: {', '.join(CLASSES[k] for k in skipped) or 'none'}).")
    dec = first.get("decisions", {})
    dec_note = (
        f"What the assistant tells users, on the test split ({UNIT_NAMES.get(dec.get('unit', ''), '')}): "
        "every take goes through the assistant's own decision function (evaluate.decide.decide) "
        "with the operating point stored in runs/<name>/thresholds.json — calibration, per-class "
        "marks, at most one error per exclusive group, at most 4, and the unsuitable-input "
        "check. P/R/F1 count only the errors told (a 'not sure' or 'unsuitable' take tells "
        "none). 'said correct' on a composite test take is a false all-clear.")
    rule_note = (
        f"Rules compared on val only: {_get(best.metrics, ('rules', 'compared_on')) or '–'}; "
        f"calibration and F1 marks fitted on {_get(best.metrics, ('rules', 'fitted_on')) or '–'}. "
        "The composites are imagined from the val singles with the training stage's imagination "
        "(train.data.imagine). With threshold_rule = auto the first rule (in this order) within "
        "0.01 of the best micro F1 is kept: one mark for every error reads most plainly, and "
        "smaller val differences are noise. With a target_precision in [eval], only the rules "
        "that reach it on val compete (calibrated_precision aims at it).")
    notes = list(notes or [])
    by_warning: dict[str, list[str]] = {}
    for e in entries:
        for w in e.warnings:
            runs = by_warning.setdefault(w, [])
            if e.run not in runs:
                runs.append(e.run)
    notes.extend(f"{', '.join(runs)}: {w}" for w, runs in by_warning.items())

    sections: list[tuple[str, str, Any, str]] = [
        ("Where the models came from", "table", provenance_rows(entries),
         "trained = when the checkpoint was written; code = the commit that trained it."),
        ("Model comparison (ranking)", "table", comparison_rows(entries), ap_note),
        ("What the assistant tells users (test)", "table", decision_rows(entries), dec_note),
        ("How the decision rule was chosen (val)", "table", rule_rows(entries), rule_note),
        (f"Per class, at the assistant's operating point: {best.label}", "table",
         per_class_rows(best),
         "precision/recall/F1 of the errors the assistant tells (its own rule); AP ranks the "
         "takes by the class's score; chance AP = the share of test takes with the class."),
        ("Calibration", "table", calibration_rows(entries),
         "ECE on val (imagined composites + singles, all 14 classes) and on the test takes (the "
         "13 error classes); 'raw scores' = the head's probabilities before calibration."),
    ]
    if "reliability" in pngs:
        sections.append((f"Reliability: {best.label}", "img", "reliability", ""))
    ood = ood_rows(entries)
    if ood[1]:
        sections.append(("Unsuitable-input check", "table", ood,
                         "A video is unsuitable when its features are further from every "
                         "training video than the limit (a high quantile of the val videos' "
                         "distances) times the slack, in any stream; the assistant then lists "
                         "no errors. A test video flagged here is a composite take judged "
                         "unsuitable."))
    sections += [
        ("Per-class AP", "img", "per_class_ap", ""),
        ("mAP by number of errors", "img", "map_by_errors", ""),
        ("Precision–recall curves", "img", "pr_curves", ""),
        (f"Per-class precision–recall: {best.label}", "img", "pr_per_class",
         "The best model (see the summary)."),
        (f"Errors told vs true errors: {best.label}", "img", "cooccurrence",
         "Row: takes whose true set has that error; column: how many of them were told that "
         "class. The diagonal counts the errors found; off-diagonal cells are confusions."),
    ]
    examples = example_rows(best)
    if examples[1]:
        sections.append((f"Example takes: {best.label}", "table", examples,
                         "hit: the exact set told; miss: a real error not told; false alarm: "
                         "an error told that is not there."))
    if "examples" in pngs:
        sections.append(("Example takes: the frames the model saw (first view)", "img",
                         "examples", ""))
    if zeroshot:
        sections.append((
            "Zero-shot recognition after narration pretraining", "table",
            zeroshot_rows(entries, zeroshot),
            "Narration runs (cprclip train task=narration, docs/narration.md) never saw a class "
            "label: they score each video against the 14 class prompts. Single-class columns: "
            "the held-out people's single-class clips (val), chance top-1 7.1%. mAP columns: "
            "the composite test clips, as in the model comparison. 'CPR labels upstream' names "
            "the input streams whose backbones were fine-tuned with this project's labels."))
    by_view = _view_table(entries)
    if by_view:
        sections.append(("mAP per camera view (test, per video)", "table", by_view, ""))

    when = time.strftime("%Y-%m-%d %H:%M")
    made = f"Made on {when} by code {code_version()}" + (f" with `{command}`." if command else ".")
    summary = summary_lines(entries)
    md = ["# CPR-CLIP evaluation report", "", made, "", "## Summary", ""]
    md += [f"- {line}" for line in summary] + [""]
    for n in notes:
        md += [f"> **Warning:** {n}", ""]
    md += ["## Glossary", ""] + [f"- **{k}**: {v}" for k, v in GLOSSARY] + [""]
    hp = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>"
          "<meta name='viewport' content='width=device-width, initial-scale=1'>"
          f"<title>CPR-CLIP evaluation report</title><style>{_CSS}</style></head><body>",
          "<h1>CPR-CLIP evaluation report</h1>",
          f"<p>{_md_inline(made.replace('`', ''))}</p>",
          "<h2>Summary</h2><div class='summary'><ul>"
          + "".join(f"<li>{_md_inline(line)}</li>" for line in summary) + "</ul></div>"]
    for n in notes:
        hp.append(f"<p class='warn'><b>Warning:</b> {html.escape(n)}</p>")
    hp.append("<h2>Glossary</h2><dl class='glossary'>" + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in GLOSSARY) + "</dl>")
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
        rows.append([_model(e), e.head]
                    + [_pct(_get(bv, (v, "map"))) for v in views]
                    + [_pct(_get(bv, (v, "mmit_map"))) for v in views])
    return header, rows
