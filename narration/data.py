"""Feature rows joined with their take's narration, and every text embedded once.

Rows come from the feature store (``train.data.load_rows``: streams joined on video_id,
concatenated along D); each row's take and narration file come from the manifest
(``pipeline.manifest``: the ``narration`` column, or ``narration/<take_id>.json`` beside it).
Views are separate rows that share their take's texts.

A commentary line covers the segments whose time span overlaps its ``[start, end]``: segment k
of T spans ``[k, k + 1] * duration / T`` (TSN samples one frame or clip inside each). The
labels stay with the rows for the zero-shot figures only; nothing here hands them to training.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from narration.config import NarrationConfig
from train.viewnorm import ViewNorm

log = logging.getLogger(__name__)


@dataclass
class Rows:
    """Feature rows with their texts. Shapes: N videos, T segments, D features, L lines.

    ``features`` (N, T, D) float32; ``labels`` (N, C) uint8 (evaluation only); ``take``,
    ``session`` (N,) int ids; ``keystep`` (N,) and ``abstract`` (N,) text indices;
    ``line_video`` (L,) row of each line, ``line_mask`` (L, T) bool, ``line_text`` (L,) text
    index, ``line_key`` (L,) int (one per distinct (take, line): the views of a take share it).
    """

    video_id: np.ndarray
    split: np.ndarray
    view: np.ndarray
    take_id: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    take: np.ndarray
    session: np.ndarray
    keystep: np.ndarray
    abstract: np.ndarray
    line_video: np.ndarray
    line_mask: np.ndarray
    line_text: np.ndarray
    line_key: np.ndarray

    def __len__(self) -> int:
        return len(self.video_id)

    def select(self, idx: np.ndarray) -> "Rows":
        """Rows ``idx`` (indices or a boolean mask) with their lines, renumbered."""
        idx = np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx)
        new = -np.ones(len(self), dtype=np.int64)
        new[idx] = np.arange(len(idx))
        keep = np.flatnonzero(new[self.line_video] >= 0)
        # lines in the order of the selected rows, so a batch's lines follow its videos
        keep = keep[np.argsort(new[self.line_video[keep]], kind="stable")]
        return Rows(self.video_id[idx], self.split[idx], self.view[idx], self.take_id[idx],
                    self.labels[idx], self.features[idx], self.take[idx], self.session[idx],
                    self.keystep[idx], self.abstract[idx], new[self.line_video[keep]],
                    self.line_mask[keep], self.line_text[keep], self.line_key[keep])


@dataclass
class Corpus:
    """The rows and every text they use. ``raw`` (K, E): the encoder's unit embeddings, in
    ``texts`` order; ``digest``: sha256 over the texts (part of a run's identity)."""

    rows: Rows
    texts: list[str]
    raw: np.ndarray
    sessions: list[str]
    digest: str
    provenance: dict[str, Any]
    viewnorm: ViewNorm = field(default_factory=ViewNorm)  # [narration] view_standardise

    @property
    def labelled_streams(self) -> list[str]:
        return [m for m, p in self.provenance["features"].items() if p["class_labels_upstream"]]


def segment_windows(starts: np.ndarray, ends: np.ndarray, duration: float, segments: int
                    ) -> np.ndarray:
    """(L, T) bool: segment k is under line i when ``[k, k+1] * duration / T`` overlaps
    ``[start_i, end_i]``; a line between segments (none overlaps) takes the nearest one."""
    edges = np.arange(segments + 1) * duration / segments
    lo, hi = edges[:-1][None, :], edges[1:][None, :]
    s, e = np.asarray(starts, float)[:, None], np.asarray(ends, float)[:, None]
    mask = (np.minimum(hi, e) - np.maximum(lo, s)) > 0
    for i in np.flatnonzero(~mask.any(axis=1)):
        mid = 0.5 * (starts[i] + ends[i])
        mask[i, int(np.clip(mid / duration * segments, 0, segments - 1))] = True
    return mask


def saw_class_labels(attrs: dict[str, Any]) -> bool:
    """Whether a feature file's backbone was trained with this project's class labels: true
    unless its weights were random or a shipped pretrained file (extract/pretrained.py: ImageNet
    or Kinetics weights, which never saw a CPR label). A fine-tuned checkpoint (finetune/) or a
    user's file counts as labelled."""
    from extract.pretrained import PRETRAINED
    from pipeline.features import FeatureRecipe

    recipe = FeatureRecipe.from_attrs(attrs)
    shipped = {e.sha256 for e in PRETRAINED.values()} | {e.converted_sha256 for e in
                                                         PRETRAINED.values()}
    return not (recipe.random_init or recipe.checkpoint_sha256 in shipped)


def load_corpus(cfg: NarrationConfig) -> Corpus:
    """Every feature row of ``cfg``'s streams whose take has a narration file, and its texts."""
    from pipeline.features import FeatureRecipe
    from pipeline.manifest import load_manifest
    from synth.narration import read_take
    from train.data import fit_view_norm, load_rows, view_standardised

    backbone = {m: cfg.skeleton_backbone if m == "skeleton" else cfg.backbone
                for m in cfg.modalities}
    feats, split, feat_prov = load_rows(cfg.features_dir, cfg.dataset, backbone, cfg.segments,
                                        tuple(cfg.modalities), cfg.manifest)
    # train/viewnorm.py: statistics of the training people's videos, per camera
    mods = tuple(cfg.modalities)
    viewnorm = fit_view_norm(feats.select(split == "train"), mods, cfg.view_standardise)
    if viewnorm:
        feats = view_standardised(feats, viewnorm, mods)
        log.info("standardised per camera view: %s", ", ".join(viewnorm.modalities))
    records = {r.video_id: r for r in load_manifest(cfg.manifest, check_files=False,
                                                   allow_outside_root=True)}
    texts: dict[str, int] = {}

    def tid(t: str) -> int:
        return texts.setdefault(t, len(texts))

    takes: dict[str, int] = {}
    sessions: dict[str, int] = {}
    files: dict[Path, Any] = {}
    keep, take, session, keystep, abstract = [], [], [], [], []
    lv, lm, lt, lk = [], [], [], []
    line_keys: dict[tuple[str, int], int] = {}
    missing = 0
    for i, vid in enumerate(feats.video_id):
        rec = records.get(vid)
        if rec is None or rec.narration is None:
            missing += 1
            continue
        if rec.narration not in files:
            files[rec.narration] = read_take(rec.narration)
        nf = files[rec.narration]
        row = len(keep)
        keep.append(i)
        take.append(takes.setdefault(rec.take_id, len(takes)))
        session.append(sessions.setdefault(nf.session, len(sessions)))
        keystep.append(tid(nf.keystep))
        abstract.append(tid(nf.abstract))
        if nf.lines:
            mask = segment_windows(np.array([ln.start for ln in nf.lines]),
                                   np.array([ln.end for ln in nf.lines]), nf.duration,
                                   cfg.segments)
            for j, ln in enumerate(nf.lines):
                lv.append(row)
                lm.append(mask[j])
                lt.append(tid(ln.text))
                lk.append(line_keys.setdefault((rec.take_id, j), len(line_keys)))
    if missing:
        log.warning("%d of %d feature rows have no narration file (manifest column narration, "
                    "or narration/<take_id>.json beside it; 'cprclip narrate' writes them): left "
                    "out", missing, len(feats))
    if not keep:
        raise ValueError(f"{cfg.manifest}: no feature row has a narration file; run "
                         "'cprclip narrate' (an existing synthetic dataset) or fill the manifest's "
                         "narration column")
    k = np.array(keep)
    T = cfg.segments
    rows = Rows(feats.video_id[k], split[k], feats.view[k],
                np.array([records[v].take_id for v in feats.video_id[k]]), feats.labels[k],
                feats.features[k], np.array(take), np.array(session), np.array(keystep),
                np.array(abstract), np.array(lv, dtype=np.int64),
                np.array(lm, dtype=bool).reshape(-1, T), np.array(lt, dtype=np.int64),
                np.array(lk, dtype=np.int64))
    text_list = list(texts)
    from train.text import build_text_encoder, embed_texts, encoder_id

    enc = build_text_encoder(cfg.text_encoder, cfg.text_model, cfg.text_pretrained, cfg.seed, "cpu")
    raw = embed_texts(enc, text_list, cfg.text_cache)
    digest = hashlib.sha256("\n".join(text_list).encode("utf-8")).hexdigest()
    prov = {"features": {m: {"path": p["path"], "sha256": p["sha256"],
                             "checkpoint": FeatureRecipe.from_attrs(p["attrs"]).checkpoint_path,
                             "class_labels_upstream": saw_class_labels(p["attrs"])}
                         for m, p in feat_prov.items()},
            "text_encoder": {"id": encoder_id(enc), "name": enc.name,
                             "weights_sha256": enc.weights_sha256, "random_init": enc.random_init},
            "texts": {"count": len(text_list), "sha256": digest,
                      "lines": int(len(rows.line_text)), "narration_files": len(files)},
            "rows": {s: int((rows.split == s).sum()) for s in ("train", "val", "test")},
            "view_standardise": viewnorm.describe(),
            "participants": {s: sorted({records[v].participant for v in rows.video_id[rows.split == s]})
                             for s in ("train", "val", "test")}}
    log.info("narration corpus: %d rows (%s), %d lines, %d distinct texts, %d sessions",
             len(rows), ", ".join(f"{s} {n}" for s, n in prov["rows"].items()),
             len(rows.line_text), len(text_list), len(sessions))
    return Corpus(rows, text_list, raw, list(sessions), digest, prov, viewnorm)
