"""Unsuitable input: how far a video's features lie from every training video's.

A head trained on chest compressions still scores a black screen or a test pattern, and the
scores look like any others. So before the decision, each video (each view of a take) is
compared with the training videos, modality by modality:

1. its (T, D) features are averaged over the T segments and scaled to unit length (a video
   whose features are all zero, e.g. the flow of a still picture, stays the zero vector);
2. its distance to the training videos is the cosine distance (1 - cosine similarity; 1 for
   the zero vector) to the k-th nearest one;
3. the modality's *limit* is the ``quantile`` of the same distance over the val videos (held-out
   people doing the same movements), or over the training videos' leave-one-out distances when
   there is no val split;
4. the video's *ratio* is the largest distance / limit over the modalities, and it is unsuitable
   when the ratio exceeds ``slack``. A take is unsuitable when any of its views is.

Why per modality and the largest ratio: the streams fail differently (a black video has no
motion, so only its flow is far; a test pattern moves, so its picture may be far while its
motion is not), and one stream far from training is reason enough not to trust the head.

Pure numpy; :class:`OodReference` is saved as an ``.npz`` (no pickles) next to the run's
``thresholds.json``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import write_atomic

_CHUNK = 256  # query rows per distance block: bounds the (rows x reference) matrix in memory


def video_vectors(features: np.ndarray) -> np.ndarray:
    """(N, T, D) features -> (N, D) unit vectors (means over T; zero rows stay zero)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"features must be (N, T, D), got {x.shape}")
    v = x.mean(axis=1)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 1e-12)


def knn_distance(query: np.ndarray, reference: np.ndarray, k: int,
                 exclude_self: bool = False) -> np.ndarray:
    """(N,) cosine distance ``1 - q.r`` of each (N, D) query row to its k-th nearest (M, D)
    reference row; rows are unit vectors or zero (:func:`video_vectors`), so a zero row is at
    distance 1 from everything. Cosine rather than Euclidean distance: on unit vectors it is
    half the squared Euclidean distance, so ratios to the limit are not squeezed by a square
    root. ``exclude_self``: query and reference are the same rows; a row is not its own
    neighbour."""
    q = np.asarray(query, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    m = len(r) - (1 if exclude_self else 0)
    if m < 1:
        raise ValueError("no reference rows to compare with")
    kk = min(k, m)
    out = np.empty(len(q))
    for a in range(0, len(q), _CHUNK):
        b = min(a + _CHUNK, len(q))
        d = np.maximum(1.0 - q[a:b] @ r.T, 0.0)
        if exclude_self:
            d[np.arange(b - a), np.arange(a, b)] = np.inf
        out[a:b] = np.partition(d, kk - 1, axis=1)[:, kk - 1]
    return out


@dataclass(frozen=True)
class OodReference:
    """The training videos' unit vectors per modality, and each modality's limit.

    ``reference``: {modality: (M, D) float32}; ``limits``: {modality: distance}; ``k``,
    ``quantile`` and ``slack`` as in the module docstring; ``limit_source``: ``val`` or
    ``train`` (leave-one-out)."""

    reference: dict[str, np.ndarray]
    limits: dict[str, float]
    k: int
    quantile: float
    slack: float
    limit_source: str = "val"

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.reference)

    def distances(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{modality: (N, T, D)} -> {modality: (N,)} k-NN distances to the training videos."""
        missing = [m for m in self.reference if m not in features]
        if missing:
            raise KeyError(f"no {', '.join(missing)} features to compare with the training videos")
        return {m: knn_distance(video_vectors(features[m]), self.reference[m], self.k)
                for m in self.reference}

    def ratios(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) the largest distance / limit over the modalities (> ``slack``: unsuitable)."""
        d = self.distances(features)
        return np.max(np.stack([d[m] / max(self.limits[m], 1e-12) for m in self.reference]),
                      axis=0)

    def unsuitable(self, ratios: np.ndarray) -> np.ndarray:
        return np.asarray(ratios) > self.slack

    def summary(self) -> dict:
        """What thresholds.json and metrics.json record (not the reference rows)."""
        return {"k": self.k, "quantile": self.quantile, "slack": self.slack,
                "limits": {m: float(v) for m, v in self.limits.items()},
                "limit_source": self.limit_source,
                "n_reference": {m: int(len(r)) for m, r in self.reference.items()}}

    def save(self, path: str | Path) -> None:
        arrays = {f"reference/{m}": np.asarray(r, dtype=np.float32)
                  for m, r in self.reference.items()}
        arrays.update({f"limit/{m}": np.float64(v) for m, v in self.limits.items()})
        arrays["k"] = np.int64(self.k)
        arrays["quantile"] = np.float64(self.quantile)
        arrays["slack"] = np.float64(self.slack)
        arrays["limit_source"] = np.array(self.limit_source)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_atomic(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "OodReference":
        with np.load(Path(path), allow_pickle=False) as z:
            names = list(z.files)
            ref = {n.split("/", 1)[1]: z[n] for n in names if n.startswith("reference/")}
            lim = {n.split("/", 1)[1]: float(z[n]) for n in names if n.startswith("limit/")}
            if not ref or set(ref) != set(lim):
                raise ValueError(f"{path}: not an OOD reference (modalities {sorted(ref)} vs "
                                 f"limits {sorted(lim)})")
            return cls(ref, lim, int(z["k"]), float(z["quantile"]), float(z["slack"]),
                       str(z["limit_source"]))


def fit_ood(train: dict[str, np.ndarray], val: dict[str, np.ndarray] | None, k: int = 1,
            quantile: float = 0.99, slack: float = 1.2, max_reference: int = 20000,
            seed: int = 0) -> tuple[OodReference, np.ndarray]:
    """The reference of the training videos ({modality: (N, T, D)}) and the limits from the
    val videos. Returns ``(reference, ratios of the val videos)`` (empty without val).

    More than ``max_reference`` training videos are subsampled (seeded), to bound the file and
    the time of one comparison."""
    mods = list(train)
    n = len(train[mods[0]])
    if n < 2:
        raise ValueError(f"{n} training video(s): too few to tell what a usable video looks like")
    keep = np.arange(n)
    if n > max_reference:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_reference, replace=False))
    ref = {m: video_vectors(train[m][keep]).astype(np.float32) for m in mods}
    have_val = val is not None and len(val[mods[0]]) > 0
    limits = {}
    for m in mods:
        if have_val:
            d = knn_distance(video_vectors(val[m]), ref[m], k)
        else:
            d = knn_distance(ref[m], ref[m], k, exclude_self=True)
        limits[m] = float(np.quantile(d, quantile))
    out = OodReference(ref, limits, k, quantile, slack, "val" if have_val else "train")
    ratios = out.ratios(val) if have_val else np.zeros(0)
    return out, ratios
