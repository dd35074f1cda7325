"""The feature pickles CPR-CLIP and CPR-Coach released, to and from the feature store.

The authors' format (facts read from their public code; issue 18):

- a pickle of a list of ``(label, feature)`` pairs, one file of single-class clips
  (``TSN_Single_Feat.pkl``, 896 rows) and one of composite-error clips
  (``TSN_Composite_Feat.pkl``, 2,360 rows with TSN, 2,358 with ST-GCN);
- single-class file: the class id is ``label[0][0]``; composite file: ``label`` reshapes to a
  14-long multi-hot vector, in the class order of :mod:`pipeline.taxonomy`;
- ``feature``: 2048-d (already averaged over segments), or 8 x 2048 flattened to 16384, which
  their loader reshapes and averages; CPR-Coach's ST-GCN features are 1024-d;
- no video ids, views, takes or participants.

:func:`import_features` turns the two files into one store file
``features/<dataset>/<backbone>-<modality>-<T>seg.h5``:

- T = 8 for 16384-d rows (reshaped to (8, 2048)), T = 1 for any other width (``segments``
  overrides this for other layouts, e.g. a flattened 8 x 512 export of the demo's features);
- single-class rows -> ``train``, except a seeded, per-class hold-out -> ``val``
  (:func:`val_holdout`); composite rows -> ``test``;
- row ids ``<file stem>-<row index>``; take, participant :data:`pipeline.features.UNKNOWN`,
  view :data:`pipeline.features.UNKNOWN_VIEW` (so eval skips view fusion, and says so);
- the sha256 of both source files in the file's recipe.

Pickles are read only through :mod:`pipeline.pickle_safe`. :func:`export_features` writes the
inverse: the authors' two files from a store file (their scripts can then run on our features,
and tests make realistic inputs with it).
"""
from __future__ import annotations

import logging
import pickle
import pickletools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from pipeline.atomic import write_atomic
from pipeline.config import check_fields, check_range, key_error, to_json
from pipeline.features import (UNKNOWN, UNKNOWN_VIEW, FeatureRecipe, FeatureSet, FeatureStoreError,
                               Modality, feature_path, read_features, write_feature_set)
from pipeline.pickle_safe import UnsafePickleError, load_numpy_pickle
from pipeline.provenance import code_version, sha256_file
from pipeline.taxonomy import NUM_CLASSES, from_multi_hot, is_valid_label_set, multi_hot

log = logging.getLogger(__name__)

AUTHORS_SEGMENTS, AUTHORS_DIM = 8, 2048  # TSN's 8 segments of ResNet-50 features
FLAT_DIM = AUTHORS_SEGMENTS * AUTHORS_DIM  # 16384: the authors' per-segment layout


class AuthorsFormatError(ValueError):
    """A file in the authors' format that cannot be imported; one line naming file and row."""


@dataclass(frozen=True)
class ImportFeaturesConfig:
    """``[import_features]``: the authors' two pickles -> one feature-store file."""

    SECTION: ClassVar[str] = "import_features"

    single: str = ""  # the single-class pickle (TSN_Single_Feat.pkl); required
    composite: str = ""  # the composite-error pickle (TSN_Composite_Feat.pkl); required
    dataset: str = ""  # features/<dataset>/...: a name of your choice, e.g. cpr_clip; required
    features_dir: str = "features"
    backbone: str = ""  # names the file, and what [train] backbone must say, e.g. tsn_r50; required
    # the one stream the two files hold (the TSN release: RGB); a file name needs one, and the
    # store has no pose stream, so ST-GCN features go under rgb with backbone=stgcn
    modalities: tuple[Modality, ...] = ("rgb",)
    # 0 = from the width: 16384-d rows are 8 segments x 2048, every other width 1 segment
    segments: int = 0
    # share of each class's single-class rows held out as `val` (thresholds and val mAP need
    # held-out clips, and the release has no val split); 0 = train on every single (the paper)
    val_fraction: float = 0.2
    seed: int = 0  # picks the val hold-out
    overwrite: bool = False  # replace an existing store file (runs trained on it then warn)

    def __post_init__(self) -> None:
        check_fields(self)
        for k in ("single", "composite", "dataset", "backbone"):
            if not str(getattr(self, k)).strip():
                raise key_error(self, k, "required (e.g. single=TSN_Single_Feat.pkl "
                                         "composite=TSN_Composite_Feat.pkl dataset=cpr_clip "
                                         "backbone=tsn_r50)")
        for k in ("dataset", "backbone"):
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", getattr(self, k)):
                raise key_error(self, k, f"{getattr(self, k)!r} must be one file-name part "
                                         "(letters, digits, _ . -)")
        if len(self.modalities) != 1:
            raise key_error(self, "modalities", f"the two files hold one stream; give one of "
                                                f"rgb, flow (got {list(self.modalities)})")
        check_range(self, "segments", ge=0)
        check_range(self, "val_fraction", ge=0, lt=1)

    @property
    def modality(self) -> str:
        return self.modalities[0]


ExportShape = Literal["mean", "segments"]


@dataclass(frozen=True)
class ExportFeaturesConfig:
    """``[export_features]``: one feature-store file -> the authors' two pickles."""

    SECTION: ClassVar[str] = "export_features"

    dataset: str = "synthetic"
    features_dir: str = "features"
    backbone: str = ""  # which files: features/<dataset>/<backbone>-<modality>-<segments>seg.h5; required
    modalities: tuple[Modality, ...] = ("rgb",)  # one pair of pickles per stream
    segments: int = 8
    # mean: one (D,) vector per clip, as the authors' 2048-d files; segments: the (T, D)
    # features flattened to (T*D,), as their 16384-d files (their loader reshapes 8 x 2048)
    shape: ExportShape = "mean"
    # "" = <features_dir>/<dataset>/authors-<backbone>-<modality>-<shape>/ per stream; a folder
    # given here holds the files of one stream, or a <modality>/ subfolder per stream
    out_dir: str = ""
    prefix: str = "TSN"  # <prefix>_Single_Feat.pkl, <prefix>_Composite_Feat.pkl: their scripts' names
    # the authors' single-class file holds every single-class clip; their composite file the test set
    single_splits: tuple[str, ...] = ("train", "val")
    composite_splits: tuple[str, ...] = ("test",)

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.backbone.strip():
            raise key_error(self, "backbone", "required: the store file's backbone (e.g. tsn_r18)")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.prefix):
            raise key_error(self, "prefix", f"{self.prefix!r} must be one file-name part")
        check_range(self, "segments", ge=1)
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise key_error(self, "modalities", f"give each of rgb, flow at most once, at least "
                                                f"one (got {list(self.modalities)})")
        if not self.single_splits or not self.composite_splits:
            raise key_error(self, "single_splits" if not self.single_splits else "composite_splits",
                            "needs at least one split name")
        both = set(self.single_splits) & set(self.composite_splits)
        if both:
            raise key_error(self, "composite_splits", f"split(s) {sorted(both)} are also in "
                                                      "single_splits")

    def out_folder(self, modality: str) -> Path:
        if self.out_dir:
            return Path(self.out_dir) / (modality if len(self.modalities) > 1 else "")
        return (Path(self.features_dir) / self.dataset
                / f"authors-{self.backbone}-{modality}-{self.shape}")

    def out_files(self, modality: str) -> tuple[Path, Path]:
        d = self.out_folder(modality)
        return d / f"{self.prefix}_Single_Feat.pkl", d / f"{self.prefix}_Composite_Feat.pkl"


# --- reading the authors' files ---------------------------------------------------------------

@dataclass
class AuthorsRows:
    """Rows of one authors' file: ``labels`` (N, C) uint8 multi-hot, ``features`` (N, F) float32."""

    path: Path
    labels: np.ndarray
    features: np.ndarray
    sha256: str
    dtype: str

    def __len__(self) -> int:
        return len(self.labels)


def _single_label(label: Any, where: str) -> int:
    """The class id of a single-class row (the authors read it as ``label[0][0]``)."""
    a = np.asarray(label)
    if a.dtype.kind not in "iuf" or a.size != 1:
        raise AuthorsFormatError(f"{where}: a single-class label holds one class id "
                                 f"(label[0][0]); got {a.dtype} of shape {a.shape}")
    v = float(a.reshape(-1)[0])
    if not v.is_integer() or not 0 <= v < NUM_CLASSES:
        raise AuthorsFormatError(f"{where}: class id {v:g} is not one of 0..{NUM_CLASSES - 1}")
    return int(v)


def _composite_label(label: Any, where: str) -> np.ndarray:
    """The (C,) multi-hot of a composite row (the authors reshape ``label`` to (14,))."""
    a = np.asarray(label)
    if a.dtype.kind not in "iufb" or a.size != NUM_CLASSES:
        raise AuthorsFormatError(f"{where}: a composite label is a {NUM_CLASSES}-long multi-hot "
                                 f"vector; got {a.dtype} of shape {a.shape}")
    v = a.reshape(-1).astype(np.float64)
    if not np.isin(v, (0.0, 1.0)).all():
        raise AuthorsFormatError(f"{where}: composite label has values other than 0 and 1")
    if not v.any():
        raise AuthorsFormatError(f"{where}: composite label has no class set")
    return v.astype(np.uint8)


def read_authors_file(path: str | Path, kind: Literal["single", "composite"]) -> AuthorsRows:
    """Read one of the authors' pickles (restricted unpickler) and check every row.

    Raises :class:`AuthorsFormatError` (or UnsafePickleError) with one line naming the file
    and, for a bad row, its index.
    """
    path = Path(path)
    data = load_numpy_pickle(path)
    if not isinstance(data, (list, tuple)):
        raise AuthorsFormatError(f"{path}: expected a list of (label, feature) pairs, "
                                 f"got a {type(data).__name__}")
    if not data:
        raise AuthorsFormatError(f"{path}: the list of (label, feature) pairs is empty")
    labels = np.zeros((len(data), NUM_CLASSES), dtype=np.uint8)
    feats: list[np.ndarray] = []
    width = None
    for i, item in enumerate(data):
        where = f"{path}: row {i}"
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise AuthorsFormatError(f"{where}: expected a (label, feature) pair, got "
                                     f"{type(item).__name__}"
                                     f"{f' of length {len(item)}' if isinstance(item, (list, tuple)) else ''}")
        label, feature = item
        if kind == "single":
            labels[i, _single_label(label, where)] = 1
        else:
            labels[i] = _composite_label(label, where)
        f = np.asarray(feature)
        if f.dtype.kind not in "iuf" or f.ndim != 1:
            raise AuthorsFormatError(f"{where}: a feature is a 1-D numeric vector (2048, 16384 "
                                     f"or 1024 values); got {f.dtype} of shape {f.shape}")
        if width is None:
            width = f.shape[0]
        elif f.shape[0] != width:
            raise AuthorsFormatError(f"{where}: feature has {f.shape[0]} values, row 0 has "
                                     f"{width}")
        if not np.isfinite(f).all():
            raise AuthorsFormatError(f"{where}: feature contains NaN or Inf")
        feats.append(f)
    dtype = str(np.asarray(feats[0]).dtype)
    return AuthorsRows(path, labels, np.stack(feats).astype(np.float32), sha256_file(path), dtype)


def resolve_segments(width: int, segments: int, where: str) -> int:
    """T for rows of ``width`` values: ``segments`` when given, else 8 for the authors'
    16384-d (8 x 2048) rows and 1 for every other width (2048-d TSN means, 1024-d ST-GCN)."""
    t = segments or (AUTHORS_SEGMENTS if width == FLAT_DIM else 1)
    if width % t:
        raise AuthorsFormatError(f"{where}: {width} values per row do not split into "
                                 f"segments={t}")
    return t


def val_holdout(classes: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: which single-class rows go to ``val``.

    Per class (in id order), ``round(fraction * n_c)`` of its n_c rows, at most n_c - 1 so that
    every class keeps a training row, drawn without replacement from
    ``numpy.random.default_rng(seed)``; the rest stay ``train``.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(len(classes), dtype=bool)
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        k = min(int(round(fraction * len(idx))), len(idx) - 1)
        if k > 0:
            out[rng.permutation(idx)[:k]] = True
    return out


def _stem(path: Path) -> str:
    """A file's stem reduced to a safe id part (pipeline.paths' rules)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_") or "features"


def row_ids(single: Path, composite: Path, n_single: int, n_composite: int) -> tuple[list[str], list[str]]:
    """``<stem>-<index>`` for every row of both files (the kind is added when the stems agree)."""
    a, b = _stem(single), _stem(composite)
    if a == b:
        a, b = f"{a}-single", f"{b}-composite"
    width = max(5, len(str(max(n_single, n_composite))))
    return ([f"{a}-{i:0{width}d}" for i in range(n_single)],
            [f"{b}-{i:0{width}d}" for i in range(n_composite)])


def import_features(cfg: ImportFeaturesConfig) -> tuple[Path, dict[str, Any]]:
    """Write the store file of ``cfg``; returns its path and a summary (counts, T, D)."""
    single = read_authors_file(cfg.single, "single")
    composite = read_authors_file(cfg.composite, "composite")
    width = single.features.shape[1]
    if composite.features.shape[1] != width:
        raise AuthorsFormatError(f"{composite.path}: rows have {composite.features.shape[1]} "
                                 f"values, {single.path} has {width}")
    t = resolve_segments(width, cfg.segments, str(single.path))
    d = width // t
    out = feature_path(cfg.features_dir, cfg.dataset, cfg.backbone, cfg.modality, t)
    if out.exists() and not cfg.overwrite:
        raise AuthorsFormatError(f"{out} exists; give overwrite=true to replace it (runs "
                                 "trained on it will then warn that it changed)")

    classes = single.labels.argmax(axis=1)
    is_val = val_holdout(classes, cfg.val_fraction, cfg.seed)
    ids_s, ids_c = row_ids(single.path, composite.path, len(single), len(composite))
    n = len(single) + len(composite)
    split = np.array([("val" if v else "train") for v in is_val] + ["test"] * len(composite))
    labels = np.concatenate([single.labels, composite.labels])
    feats = np.concatenate([single.features, composite.features]).reshape(n, t, d)
    invalid = sum(not is_valid_label_set(from_multi_hot(y)) for y in composite.labels)
    if invalid:
        log.warning("%s: %d composite row(s) hold label sets the taxonomy calls impossible "
                    "(two errors of one exclusive group); they are imported as they are",
                    composite.path, invalid)
    rows = FeatureSet(out, np.array(ids_s + ids_c), np.full(n, UNKNOWN), np.full(n, UNKNOWN_VIEW),
                      np.full(n, UNKNOWN), split, labels, feats)
    holdout = (f"per class, round({cfg.val_fraction} * n) of the single-class rows (at most n - 1) "
               f"drawn with numpy.random.default_rng({cfg.seed}) -> val; the rest -> train")
    recipe = FeatureRecipe(
        backbone=cfg.backbone, modality=cfg.modality, segments=t, init="imported",
        checkpoint_sha256="unknown",
        sampling="unknown (features imported from the authors' pickles)", crops="unknown",
        decoder="unknown", feature_dim=d, precision=single.dtype, seed=cfg.seed,
        config_json=to_json(cfg), code_version=code_version(),
        extra={"source": "authors_pickle",
               "source_files": {k: {"path": str(r.path.resolve()), "sha256": r.sha256,
                                    "rows": len(r), "values_per_row": width}
                                for k, r in (("single", single), ("composite", composite))},
               "val_holdout": holdout,
               "rows_unknown": "take_id, participant and view are unknown: eval skips view fusion"})
    write_feature_set(out, rows, recipe)
    summary = {"path": str(out), "train": int((split == "train").sum()),
               "val": int((split == "val").sum()), "test": len(composite), "segments": t,
               "dim": d, "invalid_label_sets": invalid}
    log.info("%s: %d train, %d val (held out), %d test rows, T=%d, D=%d; takes, views and "
             "participants are unknown, so eval will skip view fusion", out, summary["train"],
             summary["val"], summary["test"], t, d)
    return out, summary


# --- writing the authors' files ---------------------------------------------------------------

def _numpy1_names(data: bytes) -> bytes:
    """Rename numpy 2's ``numpy._core`` globals of a protocol-3 pickle to ``numpy.core``.

    numpy 2 pickles arrays as ``numpy._core.multiarray._reconstruct``, which numpy < 1.26
    cannot import; the ``numpy.core`` spelling loads under numpy 1 and 2 alike (numpy 2 keeps
    it as an alias), as the authors' own files do. Opcodes are rewritten one by one, so raw
    array bytes are never touched. Protocol 3 has no frames, so lengths may change.
    """
    out = bytearray()
    last = 0
    for op, arg, pos in pickletools.genops(data):
        if op.name == "GLOBAL" and str(arg).startswith("numpy._core."):
            module, _, name = str(arg).partition(" ")
            end = pos + 1 + len(module) + 1 + len(name) + 1  # 'c' module '\n' name '\n'
            out += data[last:pos]
            out += b"c" + module.replace("numpy._core.", "numpy.core.", 1).encode() + b"\n"
            out += name.encode() + b"\n"
            last = end
    out += data[last:]
    return bytes(out)


def dumps_authors(pairs: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """The bytes of an authors'-format pickle of ``(label, feature)`` pairs."""
    return _numpy1_names(pickle.dumps(pairs, protocol=3))


def export_features(cfg: ExportFeaturesConfig) -> list[dict[str, Any]]:
    """Write ``<prefix>_Single_Feat.pkl`` and ``<prefix>_Composite_Feat.pkl`` per stream of
    ``cfg.modalities``; returns one summary per stream (files, row counts, widths)."""
    return [export_modality(cfg, m) for m in cfg.modalities]


def export_modality(cfg: ExportFeaturesConfig, modality: str) -> dict[str, Any]:
    """The two pickles of one store file.

    Single-class file: rows of ``single_splits`` with one label, label ``[[class_id]]``
    (int64, shape (1, 1)). Composite file: rows of ``composite_splits``, label the (14,)
    float32 multi-hot. Features float32: the mean over segments (``shape = "mean"``) or the
    (T, D) segments flattened (``"segments"``). Rows keep the store's order within each split,
    splits in the order given.
    """
    src = feature_path(cfg.features_dir, cfg.dataset, cfg.backbone, modality, cfg.segments)
    fs = read_features(src, expect={"modality": modality})

    def vectors(sel: FeatureSet) -> np.ndarray:
        x = sel.features.astype(np.float32)
        return x.mean(axis=1) if cfg.shape == "mean" else x.reshape(len(x), -1)

    def rows_of(splits: tuple[str, ...]) -> FeatureSet:
        idx = np.concatenate([np.flatnonzero(fs.split == s) for s in splits])
        return fs.select(idx)

    singles = rows_of(cfg.single_splits)
    multi = singles.labels.sum(axis=1) != 1
    if multi.any():
        log.warning("%s: %d row(s) of split(s) %s are not single-class; left out of the "
                    "single-class file", src, int(multi.sum()), list(cfg.single_splits))
        singles = singles.select(~multi)
    comps = rows_of(cfg.composite_splits)
    for name, sel, splits in (("single-class", singles, cfg.single_splits),
                              ("composite", comps, cfg.composite_splits)):
        if not len(sel):
            raise FeatureStoreError(f"{src}: no {name} rows in split(s) {list(splits)}")
    single_pairs = [(np.array([[int(np.argmax(y))]], dtype=np.int64), f)
                    for y, f in zip(singles.labels, vectors(singles))]
    comp_pairs = [(y.astype(np.float32), f) for y, f in zip(comps.labels, vectors(comps))]
    f_single, f_comp = cfg.out_files(modality)
    f_single.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(f_single, dumps_authors(single_pairs))
    write_atomic(f_comp, dumps_authors(comp_pairs))
    width = int(single_pairs[0][1].shape[0])
    summary = {"modality": modality, "single": str(f_single), "composite": str(f_comp),
               "single_rows": len(single_pairs), "composite_rows": len(comp_pairs),
               "values_per_row": width, "segments": fs.segments if cfg.shape == "segments" else 1,
               "dim": fs.dim, "source": str(src)}
    log.info("%s -> %s (%d rows), %s (%d rows), %d values per row", src, f_single,
             len(single_pairs), f_comp, len(comp_pairs), width)
    return summary


__all__ = ["AuthorsFormatError", "ExportFeaturesConfig", "ImportFeaturesConfig",
           "UnsafePickleError", "dumps_authors", "export_features", "export_modality",
           "import_features",
           "read_authors_file", "resolve_segments", "row_ids", "val_holdout"]
