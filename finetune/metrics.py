"""Validation metrics of a finetune stream (pure numpy) and its confusion-matrix figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.atomic import save_figure_png
from pipeline.taxonomy import CLASSES, NUM_CLASSES


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int = NUM_CLASSES
                     ) -> np.ndarray:
    """(N,) true and predicted class ids -> (K, K) int64 counts, rows = true class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
    return cm


def accuracy_metrics(cm: np.ndarray) -> dict[str, float]:
    """Top-1 and mean class accuracy (mean per-class recall over classes present) of a
    confusion matrix."""
    total = cm.sum()
    per_class = cm.sum(1)
    present = per_class > 0
    recall = np.diag(cm)[present] / per_class[present]
    return {"top1": float(np.trace(cm) / total) if total else 0.0,
            "mean_class_acc": float(recall.mean()) if present.any() else 0.0}


def plot_confusion(cm: np.ndarray, path: Path, title: str) -> None:
    """Row-normalised confusion matrix with counts and class names, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    names = [f"{i} {c}" for i, c in enumerate(CLASSES[:cm.shape[0]])]
    fig, ax = plt.subplots(figsize=(9, 8), dpi=100)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    save_figure_png(fig, path)
