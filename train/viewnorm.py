"""Per-camera standardisation of chosen feature streams (``[train] view_standardise``).

A fixed multi-camera rig sees the same compression as a different number of pixels in each
camera: on the demo the hand points' periodic amplitude that measures depth is ~4 px in the side
views and ~2 px in view 4, so one threshold pooled over the views separates the depth classes
worse (ROC AUC 0.85) than a threshold per view (0.84-0.98). Standardising a stream's features
with the mean and standard deviation of the *training* videos of the same camera puts the views
on one scale before the head sees them; the head's own standardisation (over all rows) follows.

``ViewNorm.fit(features, views, modalities)`` learns ``{modality: per-view mean, std}`` from the
training rows; ``apply(features, views)`` standardises a ``{modality: (N, T, D)}`` dict (other
modalities pass unchanged). A view the training rows never had gets the pooled statistics of
all training rows, and is counted in ``unknown_views`` of the last call (the caller warns).
The statistics are saved in the run's ``checkpoint.safetensors`` (``viewnorm.<modality>.*``
tensors, no pickles) and applied by training, ``cprclip eval`` (scores, imagined composites and
the unsuitable-input check) and the assistant, through this one class.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

PREFIX = "viewnorm."
_MIN_STD = 1e-6


@dataclass
class _Stats:
    views: np.ndarray  # (V,) int64 camera ids
    mean: np.ndarray  # (V, D) float32
    std: np.ndarray  # (V, D) float32
    pooled_mean: np.ndarray  # (D,)
    pooled_std: np.ndarray  # (D,)


@dataclass
class ViewNorm:
    stats: dict[str, _Stats] = field(default_factory=dict)
    unknown_views: tuple[int, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.stats)

    def __bool__(self) -> bool:
        return bool(self.stats)

    @classmethod
    def fit(cls, features: dict[str, np.ndarray], views: np.ndarray,
            modalities: tuple[str, ...]) -> "ViewNorm":
        """Statistics of each of ``modalities`` per camera, from the (N, T, D) training rows
        (means and standard deviations over rows and segments)."""
        views = np.asarray(views, dtype=np.int64)
        out: dict[str, _Stats] = {}
        for m in modalities:
            if m not in features:
                raise KeyError(f"view_standardise names {m!r}, which is not among the "
                               f"streams {sorted(features)}")
            x = np.asarray(features[m], dtype=np.float64)
            if len(x) != len(views):
                raise ValueError(f"{m}: {len(x)} rows but {len(views)} view ids")
            if not len(x):
                raise ValueError(f"{m}: no training rows to take per-view statistics from")
            ids = np.unique(views)
            means, stds = [], []
            for v in ids:
                xv = x[views == v].reshape(-1, x.shape[-1])
                means.append(xv.mean(axis=0))
                stds.append(np.maximum(xv.std(axis=0), _MIN_STD))
            flat = x.reshape(-1, x.shape[-1])
            out[m] = _Stats(ids, np.asarray(means, np.float32), np.asarray(stds, np.float32),
                            flat.mean(axis=0).astype(np.float32),
                            np.maximum(flat.std(axis=0), _MIN_STD).astype(np.float32))
        return cls(out)

    def apply(self, features: dict[str, np.ndarray], views) -> dict[str, np.ndarray]:
        """``{modality: (N, T, D)}`` -> the same with this norm's modalities standardised per
        view; ``views`` (N,) camera ids. Other modalities are returned as they are."""
        if not self.stats:
            return features
        views = np.asarray(views, dtype=np.int64).reshape(-1)
        out = dict(features)
        unknown: set[int] = set()
        for m, s in self.stats.items():
            if m not in features:
                raise KeyError(f"no {m} features to standardise per view")
            x = np.asarray(features[m], dtype=np.float32)
            if len(x) != len(views):
                raise ValueError(f"{m}: {len(x)} rows but {len(views)} view ids")
            if x.shape[-1] != s.mean.shape[1]:
                raise ValueError(f"{m}: features have D={x.shape[-1]}, the per-view statistics "
                                 f"D={s.mean.shape[1]}")
            pos = {int(v): i for i, v in enumerate(s.views)}
            mean = np.empty((len(x), x.shape[-1]), np.float32)
            std = np.empty_like(mean)
            for i, v in enumerate(views.tolist()):
                k = pos.get(v)
                if k is None:
                    unknown.add(v)
                    mean[i], std[i] = s.pooled_mean, s.pooled_std
                else:
                    mean[i], std[i] = s.mean[k], s.std[k]
            out[m] = (x - mean[:, None, :]) / std[:, None, :]
        self.unknown_views = tuple(sorted(unknown))
        return out

    def to_tensors(self) -> dict[str, torch.Tensor]:
        t: dict[str, torch.Tensor] = {}
        for m, s in self.stats.items():
            for key in ("views", "mean", "std", "pooled_mean", "pooled_std"):
                t[f"{PREFIX}{m}.{key}"] = torch.from_numpy(np.ascontiguousarray(getattr(s, key)))
        return t

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "ViewNorm":
        """The norm saved by :meth:`to_tensors` (none: an empty norm that changes nothing)."""
        mods = sorted({k[len(PREFIX):].rsplit(".", 1)[0] for k in tensors if k.startswith(PREFIX)})
        out: dict[str, _Stats] = {}
        for m in mods:
            try:
                get = {key: tensors[f"{PREFIX}{m}.{key}"].numpy()
                       for key in ("views", "mean", "std", "pooled_mean", "pooled_std")}
            except KeyError as e:
                raise ValueError(f"per-view statistics of {m} are incomplete (no {e.args[0]})") from None
            out[m] = _Stats(get["views"].astype(np.int64), get["mean"], get["std"],
                            get["pooled_mean"], get["pooled_std"])
        return cls(out)

    def describe(self) -> dict:
        """What config.json records."""
        return {m: {"views": [int(v) for v in s.views]} for m, s in self.stats.items()}
