"""Read a finished training run back: the one entry point for ``cprclip eval`` and ``predict``.

Spec (other stages code against this; keep it stable):

``load_run(run_dir) -> Run`` reads ``runs/<name>/config.json`` and ``checkpoint.safetensors``
(weights + the frozen test-prompt embeddings; never unpickles). A :class:`Run` has

- ``name``: the run folder's name (e.g. ``cpr_clip_plus``)
- ``model_name``: one of ``cpr_clip``, ``cpr_clip_plus``, ``bce``, ``imaginenet_fc``
- ``config``: dict, the resolved ``[train]`` config of the run
- ``feature_files``: ``{modality: Path}``, the HDF5 files the run trained on, in the order the
  model concatenates them (``config["modalities"]``)
- ``feature_attrs``: ``{modality: dict}``, those files' attributes as recorded at training
  time, plus ``sha256`` of the file; read them typed through ``feature_recipes``
  (``{modality: pipeline.features.FeatureRecipe}``: ``.backbone``, ``.init``, ...)
- ``text_encoder``: str, e.g. ``"sentence_transformers:all-MiniLM-L6-v2@<sha256[:12]>"``;
  ``""`` for runs without text
- ``has_clip`` / ``has_bce``: which score kinds :meth:`Run.scores` returns
- ``classes``: the C = 14 class names, in column order of every score matrix
- also ``path`` (the run folder), ``modalities`` (tuple) and ``record`` (all of config.json:
  provenance, prompts, ``final_val`` metrics, ``checkpoint_sha256``)
- ``prepare(features, views) -> dict``: the stored features and their (N,) camera views ->
  the features the head reads (the ``[train] view_standardise`` streams standardised per view,
  :mod:`train.viewnorm`; an identity for runs without it). Call it before ``scores`` and before
  the unsuitable-input check.
- ``scores(features) -> dict[str, np.ndarray]``: ``features`` maps modality -> (N, T, D)
  float32, prepared (rows already joined on video_id across modalities). Returns

  - ``"clip"`` (N, C): cosine similarity of each video to the 14 single-class test prompts
    (fixed wording), when ``has_clip``; higher means more likely;
  - ``"bce"`` (N, C): sigmoid probabilities of the BCE head, when ``has_bce``;
  - ``"clip_sets"`` (N, C): only for runs trained with ``score_composite_prompts = true``:
    per-class marginals of a softmax over the prompts of every valid label set.

  It needs no text encoder: the prompt embeddings are stored in the checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.features import FeatureRecipe
from pipeline.taxonomy import CLASSES
from train import checkpoint as ckpt
from train.data import concat_modalities
from train.model import HeadArgs, VideoHead
from train.viewnorm import ViewNorm


@dataclass
class Run:
    """A finished training run, ready to score features (see the module docstring)."""

    name: str
    path: Path
    model_name: str
    config: dict[str, Any]
    feature_files: dict[str, Path]
    feature_attrs: dict[str, dict[str, Any]]
    text_encoder: str
    record: dict[str, Any]
    model: VideoHead
    test_prompts: torch.Tensor | None
    set_prompts: torch.Tensor | None = None
    set_labels: torch.Tensor | None = None
    classes: tuple[str, ...] = field(default=CLASSES)
    viewnorm: ViewNorm = field(default_factory=ViewNorm)

    @property
    def has_clip(self) -> bool:
        return self.model.args.embed_dim > 0

    @property
    def has_bce(self) -> bool:
        return self.model.args.num_classes > 0

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.config["modalities"])

    @property
    def feature_recipes(self) -> dict[str, FeatureRecipe]:
        """``{modality: FeatureRecipe}``: how the features this run trained on were made."""
        return {m: FeatureRecipe.from_attrs(a) for m, a in self.feature_attrs.items()}

    def prepare(self, features: dict[str, np.ndarray], views) -> dict[str, np.ndarray]:
        """Features as stored (``{modality: (N, T, D)}``) and their (N,) camera views -> the
        features as this run's head reads them: the ``view_standardise`` streams standardised
        per view with the training statistics (:mod:`train.viewnorm`); the rest unchanged.
        :meth:`scores` and the unsuitable-input check take prepared features."""
        return self.viewnorm.apply(features, views)

    def scores(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Prepared (:meth:`prepare`) ``{modality: (N, T, D)}`` -> ``{"clip"|"bce"|"clip_sets":
        (N, C)}`` float32."""
        x = concat_modalities(features, self.modalities)
        want = sum(self.model.args.dims)
        if x.shape[-1] != want:
            raise ValueError(f"run {self.name}: features have D={x.shape[-1]} "
                             f"({'+'.join(str(features[m].shape[-1]) for m in self.modalities)}), "
                             f"the model was trained on D={want} ({self.model.args.dims})")
        if len(x) == 0:
            c = len(self.classes)
            keys = (["clip"] if self.has_clip else []) + (["bce"] if self.has_bce else [])
            if self.set_prompts is not None:
                keys.append("clip_sets")
            return {k: np.zeros((0, c), np.float32) for k in keys}
        return self.model.scores(torch.from_numpy(x), self.test_prompts, self.set_prompts,
                                 self.set_labels)


def load_run(run_dir: str | Path) -> Run:
    """Load ``run_dir`` (``config.json`` + ``checkpoint.safetensors``); raises with the file named."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not a training run (no config.json)")
    record = json.loads(cfg_path.read_text())
    if not record.get("finished"):
        raise ValueError(f"{run_dir}: training has not finished (resume it with resume=true)")
    tensors, meta = ckpt.load(run_dir / "checkpoint.safetensors")
    model = VideoHead(HeadArgs.from_dict(meta["model_args"]))
    model.load_state_dict(ckpt.strip_prefix(tensors, "model."))
    model.eval()
    feats = record.get("features", {})
    return Run(
        name=run_dir.name, path=run_dir, model_name=meta["model_name"], config=record["config"],
        feature_files={m: Path(v["path"]) for m, v in feats.items()},
        feature_attrs={m: {**v.get("attrs", {}), "sha256": v.get("sha256")} for m, v in feats.items()},
        text_encoder=(record.get("text_encoder") or {}).get("id", ""), record=record, model=model,
        test_prompts=tensors.get("text.test_prompts"), set_prompts=tensors.get("text.set_prompts"),
        set_labels=tensors.get("text.set_labels"), viewnorm=ViewNorm.from_tensors(tensors))
