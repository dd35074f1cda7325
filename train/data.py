"""Training data from the feature store, and ImagineNet-style composite imagination.

Features of all modalities are joined on video_id and concatenated along D, so one array
(N, T, D_rgb + D_flow) carries every stream; the head splits it again for late fusion.
Views are separate samples; the view id stays with each row.

Splits: ``train`` single-class clips are the training set; ``val`` clips (held-out participants'
single-class clips) measure progress; composite ``test`` clips are never read here.

Each epoch draws its samples from ``numpy.random.default_rng([seed, epoch])``, so an epoch's
data depends only on the seed and the epoch number: a resumed run sees the same samples.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.features import (FeatureStoreError, align_to_manifest, feature_path, join,
                               read_features)
from pipeline.provenance import sha256_file
from pipeline.taxonomy import CORRECT, ERROR_IDS, NUM_CLASSES, is_valid_label_set
from train.viewnorm import ViewNorm

log = logging.getLogger(__name__)


@dataclass
class FeatureRows:
    """Rows of one split. ``features`` (N, T, D) float32 with D = sum(dims); ``labels`` (N, C) uint8."""

    video_id: np.ndarray
    view: np.ndarray
    participant: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    dims: tuple[int, ...]  # per-modality D, in modality order

    def __len__(self) -> int:
        return len(self.video_id)

    def select(self, mask: np.ndarray) -> "FeatureRows":
        return FeatureRows(self.video_id[mask], self.view[mask], self.participant[mask],
                           self.labels[mask], self.features[mask], self.dims)

    def single_class(self) -> np.ndarray:
        """(N,) class id of each single-class row; raises if a row has several labels."""
        counts = self.labels.sum(axis=1)
        if (counts != 1).any():
            bad = self.video_id[counts != 1][:3]
            raise ValueError(f"rows {', '.join(bad)} are not single-class")
        return self.labels.argmax(axis=1)


def split_modalities(rows: FeatureRows, modalities: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The rows' concatenated (N, T, sum D) features -> ``{modality: (N, T, D_m)}`` (views)."""
    if len(modalities) != len(rows.dims):
        raise ValueError(f"{len(modalities)} modalities for {len(rows.dims)} feature blocks")
    edges = np.cumsum((0,) + tuple(rows.dims))
    return {m: rows.features[..., a:b] for m, a, b in zip(modalities, edges[:-1], edges[1:])}


def with_features(rows: FeatureRows, features: dict[str, np.ndarray],
                  modalities: tuple[str, ...]) -> FeatureRows:
    """``rows`` with their features replaced by ``features`` concatenated in ``modalities`` order."""
    return FeatureRows(rows.video_id, rows.view, rows.participant, rows.labels,
                       concat_modalities(features, modalities), rows.dims)


def fit_view_norm(rows: FeatureRows, modalities: tuple[str, ...],
                  wanted: tuple[str, ...]) -> ViewNorm:
    """``view_standardise``: per-camera statistics of the ``wanted`` streams that are among
    ``modalities``, from ``rows`` (the training people's videos); empty when none is wanted."""
    per_view = tuple(m for m in wanted if m in modalities)
    if not per_view:
        return ViewNorm()
    return ViewNorm.fit(split_modalities(rows, modalities), rows.view, per_view)


def view_standardised(rows: FeatureRows, norm: ViewNorm, modalities: tuple[str, ...]) -> FeatureRows:
    """``rows`` with ``norm``'s streams standardised per camera view (the rest as they are)."""
    if not norm:
        return rows
    return with_features(rows, norm.apply(split_modalities(rows, modalities), rows.view), modalities)


def concat_modalities(features: dict[str, np.ndarray], modalities: tuple[str, ...]) -> np.ndarray:
    """``{modality: (N, T, D_m)}`` -> (N, T, sum D_m) in ``modalities`` order."""
    missing = [m for m in modalities if m not in features]
    if missing:
        raise KeyError(f"features for modality {missing} are missing; need {list(modalities)}")
    shapes = {features[m].shape[:2] for m in modalities}
    if len(shapes) != 1:
        raise ValueError(f"modalities disagree on (N, T): {sorted(shapes)}")
    return np.concatenate([np.asarray(features[m], dtype=np.float32) for m in modalities], axis=-1)


def load_rows(features_dir: str | Path, dataset: str, backbone: str | dict[str, str],
              segments: int, modalities: tuple[str, ...], manifest: str | Path = ""
              ) -> tuple[FeatureRows, np.ndarray, dict[str, Any]]:
    """All rows of the feature files of ``modalities``, joined on video_id. ``backbone``: one
    name for every modality, or ``{modality: name}``.

    When the ``manifest`` file exists, the rows follow it (pipeline.features.align_to_manifest):
    labels, splits, takes and views are the manifest's, and rows it no longer lists are left
    out, so a correction there needs no re-extraction. Without one, rows are as stored.

    Returns the rows, their (N,) split names, and provenance ``{modality: {path, sha256, attrs}}``.
    """
    sets = []
    for m in modalities:
        name = backbone[m] if isinstance(backbone, dict) else backbone
        path = feature_path(features_dir, dataset, name, m, segments)
        sets.append(read_features(path, expect={"modality": m, "segments": segments}))
    records = _manifest_records(manifest)
    if records is not None:
        sets = [align_to_manifest(s, records) for s in sets]
    base = sets[0]
    for other in sets[1:]:
        base, _ = join(base, other)
    aligned = [base] + [join(base, s)[1] for s in sets[1:]]
    for s in aligned[1:]:
        if not np.array_equal(s.labels, base.labels):
            raise FeatureStoreError(f"{s.path}: labels disagree with {base.path} for the same video_id")
    dropped = max(len(s) for s in sets) - len(base)
    if dropped:
        log.warning("%d video(s) are not in every modality's file and are left out", dropped)
    feats = concat_modalities({m: s.features for m, s in zip(modalities, aligned)}, modalities)
    rows = FeatureRows(base.video_id, base.view, base.participant, base.labels, feats,
                       tuple(s.dim for s in aligned))
    provenance = {m: {"path": str(s.path), "sha256": sha256_file(s.path), "attrs": dict(s.attrs)}
                  for m, s in zip(modalities, sets)}
    return rows, base.split, provenance


def _manifest_records(manifest: str | Path) -> list | None:
    """The manifest's records (read once for every modality), or None without a manifest file.
    A manifest that does not parse is an error naming its row (pipeline.manifest)."""
    if not manifest:
        return None
    if not Path(manifest).is_file():
        log.warning("manifest %s not found: labels and splits are those stored in the feature "
                    "files", manifest)
        return None
    from pipeline.manifest import load_manifest

    # the videos need not be here: train reads features only
    return load_manifest(manifest, check_files=False, allow_outside_root=True)


def split_rows(rows: FeatureRows, split: np.ndarray) -> tuple[FeatureRows, FeatureRows]:
    """(train single-class rows, val rows)."""
    single = rows.labels.sum(axis=1) == 1
    train = rows.select((split == "train") & single)
    val = rows.select(split == "val")
    if len(train) == 0:
        raise ValueError("no single-class rows with split 'train' in the feature files")
    return train, val


# --- imagination (pure numpy) -------------------------------------------------------------------

def imaginable_sets(label_sets: list[tuple[int, ...]], classes_present: set[int],
                    sizes: tuple[int, ...]) -> dict[int, list[int]]:
    """size -> indices into ``label_sets`` of valid composites whose every error has clips."""
    out: dict[int, list[int]] = {}
    for i, s in enumerate(label_sets):
        if len(s) in sizes and is_valid_label_set(s) and set(s) <= classes_present:
            out.setdefault(len(s), []).append(i)
    missing = [n for n in sizes if n not in out]
    if missing:
        raise ValueError(f"no valid composite of size {missing} can be built from classes "
                         f"{sorted(classes_present)}")
    return out


def imagine(features: np.ndarray, classes: np.ndarray, label_sets: list[tuple[int, ...]],
            by_size: dict[int, list[int]], n: int, mix: str, alpha: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` imagined composite samples.

    features: (N, T, D) single-class clips; classes: (N,) their class ids.
    For each sample: a size uniformly from ``by_size``, then a label set of that size uniformly,
    then one random clip of each of its classes, mixed with Dirichlet(alpha) convex weights —
    segment by segment (``mix="segment"``) or on the segment means, repeated over T
    (``mix="mean"``). Returns features (n, T, D) float32 and set indices (n,) into ``label_sets``.
    """
    if mix not in ("segment", "mean"):
        raise ValueError(f"unknown mix {mix!r}; valid: segment, mean")
    pools = {int(c): np.flatnonzero(classes == c) for c in np.unique(classes)}
    sizes = sorted(by_size)
    _, t, d = features.shape
    out = np.empty((n, t, d), dtype=np.float32)
    set_ids = np.empty(n, dtype=np.int64)
    for i in range(n):
        size = sizes[rng.integers(len(sizes))]
        sid = by_size[size][rng.integers(len(by_size[size]))]
        clips = [pools[c][rng.integers(len(pools[c]))] for c in label_sets[sid]]
        w = rng.dirichlet(np.full(len(clips), alpha)).astype(np.float32)
        x = features[clips]  # (k, T, D)
        if mix == "mean":
            x = np.broadcast_to(x.mean(axis=1, keepdims=True), x.shape)
        out[i] = np.tensordot(w, x, axes=1)
        set_ids[i] = sid
    return out, set_ids


# --- the authors' imagination (imagine_scheme = "paper") ----------------------------------------

PAPER_SIZES = (2, 3)  # pairs and triples; CPR-CLIP's code imagines no quadruples


def paper_label_sets() -> list[tuple[int, ...]]:
    """Every pair and triple of the 13 errors, 78 + 286 sets, possible or not (CPR-CLIP's code
    draws from all of them, two hand forms at once included)."""
    return [c for n in PAPER_SIZES for c in itertools.combinations(ERROR_IDS, n)]


def imagine_paper(features: np.ndarray, classes: np.ndarray,
                  set_index: dict[tuple[int, ...], int], mix: str,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of imagined composites the way CPR-CLIP's code makes them.

    features: (N, T, D) single-class clips; classes: (N,) their class ids. Half of the 78
    pairs and half of the 286 triples of :func:`paper_label_sets` (drawn without replacement),
    each with n0 samples, n0 = the number of Correct clips. Per combination its errors are put
    in a random order (f1, f2[, f3]); per sample one random clip of each error and
    w ~ U(0, 1): pairs ``w f1 + (1 - w) f2``, triples ``f1 w/2 + f2 (1 - w) + f3 w/2``. ``mix``
    as in :func:`imagine` (``"mean"``: the segment means, repeated over T). Returns features
    (182 n0, T, D) float32 and set indices into ``set_index``'s list.
    """
    if mix not in ("segment", "mean"):
        raise ValueError(f"unknown mix {mix!r}; valid: segment, mean")
    n0 = int((classes == CORRECT).sum())
    if n0 == 0:
        raise ValueError("imagine_scheme = paper draws n0 = the number of Correct training clips "
                         "per combination, and there are none")
    missing = [c for c in ERROR_IDS if not (classes == c).any()]
    if missing:
        raise ValueError(f"imagine_scheme = paper combines all 13 errors; classes {missing} "
                         "have no training clip")
    pools = {c: np.flatnonzero(classes == c) for c in ERROR_IDS}
    x_all = features.mean(axis=1, keepdims=True) if mix == "mean" else features
    sets = paper_label_sets()
    out, sids = [], []
    for size in PAPER_SIZES:
        of_size = [s for s in sets if len(s) == size]
        for j in rng.choice(len(of_size), size=len(of_size) // 2, replace=False):
            order = rng.permutation(of_size[j])
            f = [x_all[pools[int(c)][rng.integers(len(pools[int(c)]), size=n0)]] for c in order]
            w = rng.random(n0).astype(np.float32)[:, None, None]
            if size == 2:
                x = w * f[0] + (1 - w) * f[1]
            else:
                x = f[0] * w / 2 + f[1] * (1 - w) + f[2] * w / 2
            out.append(np.broadcast_to(x, (n0, *features.shape[1:])).astype(np.float32))
            sids.append(np.full(n0, set_index[of_size[j]], dtype=np.int64))
    return np.concatenate(out), np.concatenate(sids)


@dataclass
class EpochSamples:
    """One epoch's samples, already shuffled: features (B_all, T, D), labels (B_all, C) float32,
    set ids (B_all,) into the run's label-set list, wording combo ids (B_all,)."""

    features: np.ndarray
    labels: np.ndarray
    set_ids: np.ndarray
    combos: np.ndarray


def epoch_samples(train: FeatureRows, label_sets: list[tuple[int, ...]],
                  set_index: dict[tuple[int, ...], int], *, seed: int, epoch: int,
                  imagine_n: int, keep_singles: float, by_size: dict[int, list[int]] | None,
                  mix: str, alpha: float, num_combos: int,
                  scheme: str = "dirichlet") -> EpochSamples:
    """Real singles (a ``keep_singles`` share) plus imagined composites, shuffled:
    ``imagine_n`` of them (``scheme = "dirichlet"``, :func:`imagine`), or CPR-CLIP's pairs and
    triples (``"paper"``, :func:`imagine_paper`; ``label_sets`` must hold them).

    ``by_size=None`` (no imagination) keeps every real single.
    """
    if scheme not in ("dirichlet", "paper"):
        raise ValueError(f"unknown imagination scheme {scheme!r}; valid: dirichlet, paper")
    rng = np.random.default_rng([seed, epoch])
    classes = train.single_class()
    n = len(train)
    if by_size is None:
        keep = np.arange(n)
    else:
        keep = np.sort(rng.choice(n, size=int(round(keep_singles * n)), replace=False))
    feats = [train.features[keep]]
    sids = [np.array([set_index[(int(c),)] for c in classes[keep]], dtype=np.int64)]
    if by_size is not None and scheme == "paper":
        f, s = imagine_paper(train.features, classes, set_index, mix, rng)
        feats.append(f)
        sids.append(s)
    elif by_size is not None and imagine_n > 0:
        f, s = imagine(train.features, classes, label_sets, by_size, imagine_n, mix, alpha, rng)
        feats.append(f)
        sids.append(s)
    x = np.concatenate(feats)
    set_ids = np.concatenate(sids)
    order = rng.permutation(len(x))
    x, set_ids = x[order], set_ids[order]
    labels = np.zeros((len(x), NUM_CLASSES), dtype=np.float32)
    for i, sid in enumerate(set_ids):
        labels[i, list(label_sets[sid])] = 1.0
    combos = rng.integers(num_combos, size=len(x))
    return EpochSamples(x, labels, set_ids, combos)
