"""Zero-shot recognition after narration pretraining: score videos against the 14 class prompts.

The prompts are those CPR-CLIP scores its test videos with (``train.prompts.eval_prompt`` of
each single class, the kinds and combination of ``[narration] prompt_kinds`` /
``prompt_combine``, as ``[train]``), embedded by the same frozen encoder and mapped by the text
transform fitted on the training narrations. A video's score for class c is the cosine between
its pooled embedding (all segments) and prompt c. Nothing here trains.

Figures (``zero_shot_figures``):

- single-class clips of the held-out participants (``val``): per-video top-1, macro F1 of the
  top-1 decisions over the 14 classes, and top-1 with the views of a take averaged;
- composite clips (``test``): class mAP (``evaluate.metrics``, classes without a positive
  skipped, as ``cprclip eval``), per video and with the views fused;
- the training participants' single-class clips, for reference (seen people, unseen labels).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from evaluate.metrics import mean_average_precision, per_class_prf
from narration.model import SegmentProjection, pool_takes
from pipeline.taxonomy import NUM_CLASSES

CHANCE = 1.0 / NUM_CLASSES


def class_prompt_texts(kinds: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The 14 single-class prompts, at the test wording (train.prompts)."""
    from train.prompts import eval_prompt

    return [eval_prompt((k,), kinds) for k in range(NUM_CLASSES)]


@torch.no_grad()
def video_embeddings(model: SegmentProjection, features: np.ndarray, batch: int = 256
                     ) -> np.ndarray:
    """(N, E) unit embeddings of (N, T, D) features (eval mode, all segments pooled)."""
    model.eval()
    out = []
    for i in range(0, len(features), batch):
        seg, _ = model(torch.from_numpy(np.ascontiguousarray(features[i:i + batch])))
        out.append(pool_takes(seg).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.args.embed_dim), np.float32)


def _fuse(scores: np.ndarray, labels: np.ndarray, take: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Scores averaged over the views of each take, with the take's labels."""
    ids, inv = np.unique(take, return_inverse=True)
    s = np.zeros((len(ids), scores.shape[1]))
    np.add.at(s, inv, scores)
    s /= np.bincount(inv)[:, None]
    lab = np.zeros((len(ids), labels.shape[1]), dtype=labels.dtype)
    lab[inv] = labels
    return s, lab


def single_figures(scores: np.ndarray, labels: np.ndarray, take: np.ndarray) -> dict[str, Any]:
    """Top-1, macro F1 and per-class recall of single-class clips; top-1 with views fused."""
    if len(scores) == 0:
        return {}
    y = labels.argmax(1)
    pred = scores.argmax(1)
    onehot = np.eye(NUM_CLASSES, dtype=np.uint8)
    prf = per_class_prf(onehot[pred], onehot[y])
    fs, fl = _fuse(scores, labels, take)
    return {"top1": float((pred == y).mean()), "macro_f1": float(prf["f1"].mean()),
            "per_class_recall": [round(float(v), 4) for v in prf["recall"]],
            "take_top1": float((fs.argmax(1) == fl.argmax(1)).mean()),
            "videos": int(len(y)), "takes": int(len(fl))}


def composite_figures(scores: np.ndarray, labels: np.ndarray, take: np.ndarray
                      ) -> dict[str, Any]:
    """Class mAP of composite clips, per video and with the views fused."""
    if len(scores) == 0:
        return {}
    per_video = mean_average_precision(scores, labels, "skip")
    fs, fl = _fuse(scores, labels, take)
    fused = mean_average_precision(fs, fl, "skip")
    return {"mAP": per_video.value, "mAP_fused": fused.value, "videos": int(len(scores)),
            "takes": int(len(fl)), "skipped_classes": list(per_video.skipped)}


def zero_shot_figures(emb: np.ndarray, prompts: np.ndarray, labels: np.ndarray,
                      split: np.ndarray, take: np.ndarray) -> dict[str, Any]:
    """All figures of the module docstring. ``emb`` (N, E) and ``prompts`` (C, E) unit rows."""
    scores = emb @ prompts.T
    single = labels.sum(1) == 1
    out: dict[str, Any] = {"chance_top1": CHANCE}
    for name, mask in (("val", (split == "val") & single), ("train", (split == "train") & single)):
        out[name] = single_figures(scores[mask], labels[mask], take[mask])
    comp = (split == "test") & ~single
    out["test"] = composite_figures(scores[comp], labels[comp], take[comp])
    return out


def figures_table(fig: dict[str, Any]) -> str:
    """The figures as a small aligned text table (what ``cprclip train task=narration`` prints)."""
    def pct(v):
        return "   -" if v is None else f"{100 * v:5.1f}"

    v, t, tr = fig.get("val", {}), fig.get("test", {}), fig.get("train", {})
    rows = [("held-out singles (val): top-1 per video", v.get("top1")),
            ("held-out singles (val): macro F1", v.get("macro_f1")),
            ("held-out singles (val): top-1, views fused", v.get("take_top1")),
            ("composites (test): class mAP per video", t.get("mAP")),
            ("composites (test): class mAP, views fused", t.get("mAP_fused")),
            ("training people's singles: top-1 (reference)", tr.get("top1")),
            ("chance top-1", fig.get("chance_top1"))]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {pct(val)} %" for name, val in rows)
