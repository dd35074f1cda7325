"""The assistant's numbers: compression rate and depth of a take, from regression runs
(issue 19; ``cprclip train task=regress``).

:class:`Measurers` loads the regression runs that ``[predict] measure_runs`` names (by default
``runs/regress_rate`` and ``runs/regress_depth``; a run that is not there is skipped, so the
numbers only appear where a run is available). For a take it measures each target from the
features of the run's own recipe: the features the assistant already made for its error
model are reused when the recipe is the same (same backbone, weights, sampling and crops),
otherwise they are made here with that recipe (:class:`extract.runner.FeatureModel`, and the
flow with the run's flow recipe).

Each measure is a dict (:func:`measure_dict`): the value (views averaged, as ``cprclip eval
task=regress`` scores takes), the guideline range and the sentence of
:func:`pipeline.guidelines.describe` ("Rate about 86 per minute: press faster (aim for
100–120)"), and how sure: the bin probabilities and the probability of the side of the range
the value is on ("92% sure it is below 100 per minute").
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.features import COMPATIBLE_KEYS, FeatureRecipe
from pipeline.guidelines import TARGETS, describe

log = logging.getLogger(__name__)

DEFAULT_MEASURE_RUNS = ("regress_rate", "regress_depth")


def recipe_key(recipe: FeatureRecipe) -> tuple[str, ...]:
    """What makes two feature recipes give the same features for a video."""
    return (recipe.modality, *(str(getattr(recipe, k)) for k in COMPATIBLE_KEYS),
            recipe.flow_recipe)


def side_probabilities(probs: np.ndarray, edges: np.ndarray, low: float, high: float
                       ) -> dict[str, float]:
    """``{"low", "ok", "high"}``: the probability of a value below ``low``, in [low, high] and
    above ``high`` from bin probabilities (K,) over ``edges`` (K + 1,). A bin that straddles a
    limit is split in proportion to its width on each side; the open end bins count whole."""
    p = np.asarray(probs, np.float64)
    e = np.asarray(edges, np.float64)
    out = {"low": 0.0, "ok": 0.0, "high": 0.0}
    for k, (a, b) in enumerate(zip(e[:-1], e[1:])):
        w = b - a
        below = np.clip((min(b, low) - a) / w, 0, 1)
        above = np.clip((b - max(a, high)) / w, 0, 1)
        out["low"] += p[k] * below
        out["high"] += p[k] * above
        out["ok"] += p[k] * (1 - below - above)
    return {k: float(v) for k, v in out.items()}


def measure_dict(target: str, run: str, value: float, probs: np.ndarray | None,
                 edges: np.ndarray | None, per_view: dict[str, float]) -> dict[str, Any]:
    """One number for the answer: value, guideline, status, advice, sentence and how sure."""
    t = TARGETS[target]
    status, advice, text = describe(target, value)
    out: dict[str, Any] = {
        "target": target, "run": run, "value": round(float(value), 3), "unit": t.unit,
        "shown": t.fmt(value), "guideline": [t.low, t.high], "status": status, "advice": advice,
        "text": text, "sure": None, "sure_text": "", "bins": [], "per_view": per_view}
    if probs is not None and edges is not None:
        sides = side_probabilities(probs, edges, t.low, t.high)
        sure = sides[status]
        unit = "" if t.unit.startswith("per") else f" {t.unit}"
        where = {"low": f"below {t.low:g} {t.unit}", "ok": f"within {t.low:g}\u2013{t.high:g} "
                 f"{t.unit}", "high": f"above {t.high:g} {t.unit}"}[status]
        out["sure"] = round(sure, 4)
        # under one chance in two the number is a guess near a limit: say so
        out["sure_text"] = f"{'only ' if sure < 0.5 else ''}{100 * sure:.0f}% sure it is {where}"
        out["sides"] = {k: round(v, 4) for k, v in sides.items()}
        out["bins"] = [{"low": float(a), "high": float(b),
                        "label": f"{a:g}\u2013{b:g}{unit}", "probability": round(float(q), 4)}
                       for a, b, q in zip(edges[:-1], edges[1:], probs)]
    return out


def format_measure(m: dict[str, Any]) -> str:
    """The line ``cprclip predict`` prints for one measure."""
    return m["text"] + (f"; {m['sure_text']}" if m.get("sure_text") else "") + "."


@dataclass
class _Source:
    modality: str
    recipe: FeatureRecipe
    key: tuple[str, ...]


class Measurers:
    """The loaded regression runs and the feature makers their recipes need beyond the
    assistant's own. :meth:`measure` may be called from several threads."""

    def __init__(self, runs: list[tuple[Any, list[_Source]]], extra: dict[tuple, tuple]):
        self.runs = runs  # [(train.regress.Regressor, its sources in D order)]
        self._extra = extra  # {recipe key: (ExtractConfig, FeatureModel)} for the other recipes

    @property
    def names(self) -> list[str]:
        return [r.name for r, _ in self.runs]

    @classmethod
    def load(cls, names: tuple[str, ...], runs_dir: str | Path,
             base: dict[str, FeatureRecipe], device, warnings: list[str]) -> "Measurers | None":
        """The runs of ``names`` that exist (folders, or names under ``runs_dir``), or None.

        ``base``: the assistant's own {modality: recipe}, whose features are reused. A run
        that exists but cannot be used adds a warning and is left out."""
        from extract.runner import FeatureModel, config_from_json, recorded_checkpoint
        from pipeline.log import first_line
        from train.regress import is_regress_run, load_regressor

        base_keys = {recipe_key(r) for r in base.values()}
        runs, extra = [], {}
        for name in names:
            p = Path(name)
            d = p if p.is_absolute() or is_regress_run(p) else Path(runs_dir) / name
            if not is_regress_run(d):
                log.debug("no regression run %s: no measured %s", d, name)
                continue
            try:
                reg = load_regressor(d)
                sources = []
                for s in reg.sources:
                    recipe = FeatureRecipe.from_attrs(s["attrs"])
                    key = recipe_key(recipe)
                    if key not in base_keys and key not in extra:
                        cfg = config_from_json(recipe.config_json)
                        extra[key] = (cfg, FeatureModel(cfg, recipe.modality,
                                                        recorded_checkpoint(recipe), device))
                    sources.append(_Source(recipe.modality, recipe, key))
                runs.append((reg, sources))
            except Exception as e:  # noqa: BLE001 - the numbers are extra: never block the errors
                warnings.append(f"regression run {d} cannot be used ({first_line(e)}); its "
                                "number is not shown")
        if not runs:
            return None
        log.info("measuring %s with %s", ", ".join(r.target for r, _ in runs),
                 ", ".join(str(r.path) for r, _ in runs))
        return cls(runs, extra)

    def measure(self, videos: list[Path], views: list[int], base_feats: dict[str, np.ndarray],
                base: dict[str, FeatureRecipe], flows: list[Path | None], scratch: Path
                ) -> list[dict[str, Any]]:
        """Each run's measure of the take (see :func:`measure_dict`)."""
        import torch

        from extract.runner import video_views

        by_key = {recipe_key(r): base_feats[m] for m, r in base.items() if m in base_feats}
        base_flow = recipe_key(base["flow"])[-1] if "flow" in base else None
        out = []
        for reg, sources in self.runs:
            parts = []
            for s in sources:
                if s.key not in by_key:
                    cfg, model = self._extra[s.key]
                    fl = flows
                    if s.modality == "flow" and (base_flow is None
                                                 or s.recipe.flow_recipe != base_flow):
                        fl = self._flows(videos, views, s.recipe, scratch)
                    rows = [model(torch.from_numpy(video_views(cfg, s.modality, v, fl[i])[None]))[0]
                            for i, v in enumerate(videos)]
                    by_key[s.key] = np.stack(rows)  # (V, T, D)
                parts.append(by_key[s.key])
            values, probs = reg.predict(parts)  # (V,), (V, K)
            per_view = {str(w): round(float(v), 3) for w, v in zip(views, values)}
            out.append(measure_dict(reg.target, reg.name, float(values.mean()),
                                    None if probs is None else probs.mean(axis=0),
                                    reg.edges if probs is not None else None, per_view))
        return out

    @staticmethod
    def _flows(videos: list[Path], views: list[int], recipe: FeatureRecipe,
               scratch: Path) -> list[Path]:
        """Flow videos of the take with ``recipe``'s flow settings (another recipe than the
        assistant's own), in ``scratch``."""
        from extract.flow import compute_flow_video, parse_recipe

        rec = parse_recipe(recipe.flow_recipe)
        if not rec:
            raise ValueError("the regression run's flow features record no flow recipe")
        tag = hashlib.sha256(recipe.flow_recipe.encode()).hexdigest()[:8]
        out = []
        for v, w in zip(videos, views):
            f = scratch / f"view{w}.flow-{tag}.mp4"
            if not f.is_file():
                compute_flow_video(v, f, rec["method"], int(rec["short_side"]) or None,
                                   float(rec["bound"]))
            out.append(f)
        return out
