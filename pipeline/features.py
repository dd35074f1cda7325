"""The HDF5 feature store (docs/design.md, "Feature store"). The only module that knows HDF5 keys.

Layout of one file ``features/<dataset>/<backbone>-<modality>-<T>seg.h5``:

- datasets ``video_id``, ``take_id``, ``participant``, ``split`` (N,) str; ``view`` (N,) int
- ``labels`` (N, C) uint8, C = 14
- ``features`` (N, T, D) float32: per-segment features
- attributes: ``schema_version``, ``backbone``, ``modality``, ``segments``, ``checkpoint_sha256``
  and anything else the writer passes (sampling, crops, decoder, ``config_json``,
  ``code_version``).

A file is complete or absent. Writers put rows into *shards* under ``<file>.shards/``; each shard
is written to ``*.tmp`` and renamed when closed, so a shard that exists is complete. A rerun
asks :func:`done_video_ids` and skips those videos. :func:`consolidate` merges all shards into
the final file (again tmp + rename) and removes the shards. Readers only open final files.
"""
from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import h5py
import numpy as np

from pipeline.taxonomy import NUM_CLASSES

SCHEMA_VERSION = 1
STR = h5py.string_dtype("utf-8")
ROW_FIELDS = ("video_id", "take_id", "participant", "split")
REQUIRED_ATTRS = ("schema_version", "backbone", "modality", "segments", "checkpoint_sha256")
# The streams a feature file can hold (its name carries one); a config's modality choice.
Modality = Literal["rgb", "flow"]
MODALITIES: tuple[str, ...] = get_args(Modality)
FLOW_CLIP_LEN = 5  # flow frames per segment: 5 stacked (x, y) pairs = 10 channels, TSN's flow


def clip_len(modality: str) -> int:
    """Frames per segment of a stream: 1 RGB frame, or ``FLOW_CLIP_LEN`` consecutive flow frames
    (the sampling a feature file records, and the clips finetune trains on)."""
    return FLOW_CLIP_LEN if modality == "flow" else 1


class FeatureStoreError(ValueError):
    """A feature file that cannot be used; the message names the file and the problem."""


def feature_path(features_dir: str | Path, dataset: str, backbone: str, modality: str,
                 segments: int) -> Path:
    return Path(features_dir) / dataset / f"{backbone}-{modality}-{segments}seg.h5"


def finetuned_checkpoint_path(finetune_dir: str | Path, dataset: str, backbone: str,
                              modality: str) -> Path:
    """Where ``cprclip finetune`` writes a stream's weights, and where ``cprclip extract``
    (``checkpoint = "auto"``) looks for them: ``<finetune_dir>/<dataset>/<backbone>-<modality>/
    checkpoint.safetensors`` (its own folder, not inside the models' ``runs/``)."""
    return Path(finetune_dir) / dataset / f"{backbone}-{modality}" / "checkpoint.safetensors"


def shard_dir(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".shards")


@dataclass
class FeatureSet:
    """Rows of one feature file. ``features`` is (N, T, D) float32, ``labels`` (N, C) uint8."""

    path: Path
    video_id: np.ndarray
    take_id: np.ndarray
    view: np.ndarray
    participant: np.ndarray
    split: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def recipe(self) -> "FeatureRecipe":
        """The typed provenance of the file these rows came from."""
        try:
            return FeatureRecipe.from_attrs(self.attrs)
        except FeatureStoreError as e:  # name the file: the attributes alone do not
            raise FeatureStoreError(f"{self.path}: {e}") from None

    def __len__(self) -> int:
        return len(self.video_id)

    @property
    def dim(self) -> int:
        return int(self.features.shape[-1])

    @property
    def segments(self) -> int:
        return int(self.features.shape[1])

    def select(self, mask: np.ndarray) -> "FeatureSet":
        """Rows where boolean ``mask`` is true (or integer indices)."""
        return FeatureSet(self.path, self.video_id[mask], self.take_id[mask], self.view[mask],
                          self.participant[mask], self.split[mask], self.labels[mask],
                          self.features[mask], dict(self.attrs))

    def where_split(self, split: str) -> "FeatureSet":
        return self.select(self.split == split)

    def index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.video_id)}


def _attr_value(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    if v is None:
        return ""
    return v


def _write_rows(path: Path, rows: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Write a complete file atomically: ``path.tmp`` then rename.

    The HDF5 image is built in memory and written with plain file I/O: a full disk or an I/O
    error then surfaces as one clean OSError, instead of HDF5 failing inside its own close and
    printing errors from object destructors (seen on a full tmpfs). The rows are in memory
    already, so this at most doubles a file's footprint while it is written.
    """
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    buf = io.BytesIO()
    try:
        with h5py.File(buf, "w") as f:
            for k in ROW_FIELDS:
                f.create_dataset(k, data=np.asarray(rows[k], dtype=object), dtype=STR)
            f.create_dataset("view", data=np.asarray(rows["view"], dtype=np.int16))
            f.create_dataset("labels", data=np.asarray(rows["labels"], dtype=np.uint8))
            feats = np.asarray(rows["features"], dtype=np.float32)
            f.create_dataset("features", data=feats,
                             chunks=(1, *feats.shape[1:]) if len(feats) else None)
            f.attrs["schema_version"] = SCHEMA_VERSION
            for k, v in attrs.items():
                f.attrs[k] = _attr_value(v)
            f.flush()
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # h5py reports a full disk as either
        tmp.unlink(missing_ok=True)
        raise FeatureStoreError(f"{path}: cannot write ({_os_reason(e)})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _os_reason(e: BaseException) -> str:
    """One line for a write failure: the OS's words (e.g. 'No space left on device')."""
    import re

    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    m = re.search(r"error message = '([^']+)'", str(e))
    if m:
        return m.group(1)
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(folder: Path) -> int:
    """Delete ``*.<pid>.tmp`` files left by writers that died (their pid is gone)."""
    n = 0
    for tmp in folder.glob("*.tmp"):
        try:
            pid = int(tmp.suffixes[-2].lstrip("."))
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            tmp.unlink(missing_ok=True)
            n += 1
    return n


class ShardWriter:
    """Buffers rows and closes them into complete-or-absent shard files.

    ``rank`` keeps shards of different torchrun ranks apart. Call :meth:`add` per video and
    :meth:`close` at the end; every ``rows_per_shard`` rows a shard is written, so a crash loses
    at most that many videos of work.
    """

    def __init__(self, path: str | Path, attrs: dict[str, Any], rank: int = 0,
                 rows_per_shard: int = 16):
        self.path = Path(path)
        self.attrs = dict(attrs)
        self.rank = rank
        self.rows_per_shard = rows_per_shard
        self.dir = shard_dir(self.path)
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(self.dir)
        self._rows: list[dict[str, Any]] = []
        self._dim: tuple[int, int] | None = None
        self.written = 0

    def add(self, video_id: str, take_id: str, view: int, participant: str, split: str,
            labels: np.ndarray, features: np.ndarray) -> None:
        """Add one video's (T, D) features and its (C,) multi-hot labels."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2:
            raise FeatureStoreError(f"{video_id}: features must be (T, D), got {features.shape}")
        if not np.isfinite(features).all():
            raise FeatureStoreError(f"{video_id}: features contain NaN or Inf")
        if self._dim is None:
            self._dim = features.shape
        elif features.shape != self._dim:
            raise FeatureStoreError(
                f"{video_id}: features {features.shape} differ from earlier rows {self._dim}")
        labels = np.asarray(labels, dtype=np.uint8)
        if labels.shape != (NUM_CLASSES,):
            raise FeatureStoreError(f"{video_id}: labels must be ({NUM_CLASSES},), got {labels.shape}")
        self._rows.append(dict(video_id=video_id, take_id=take_id, view=int(view),
                               participant=participant, split=split, labels=labels,
                               features=features))
        if len(self._rows) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> Path | None:
        if not self._rows:
            return None
        rows = {k: [r[k] for r in self._rows] for k in self._rows[0]}
        rows["features"] = np.stack(rows["features"])
        rows["labels"] = np.stack(rows["labels"])
        name = f"shard-r{self.rank:03d}-{time.time_ns():x}-{os.getpid()}.h5"
        out = self.dir / name
        _write_rows(out, rows, self.attrs)
        self.written += len(self._rows)
        self._rows = []
        return out

    def close(self) -> None:
        self.flush()


def _read_file(path: Path, load_features: bool = True) -> FeatureSet:
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise FeatureStoreError(f"{path}: feature file not found") from None
    except OSError as e:
        raise FeatureStoreError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        version = attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            raise FeatureStoreError(
                f"{path}: schema_version {version!r}, this code reads {SCHEMA_VERSION}; "
                "re-extract the features")
        try:
            cols = {k: f[k].asstr()[()] for k in ROW_FIELDS}
            view = f["view"][()]
            labels = f["labels"][()]
            feats = f["features"][()] if load_features else np.zeros((len(view), 0, 0), np.float32)
        except KeyError as e:
            raise FeatureStoreError(f"{path}: missing dataset {e}") from None
    cols = {k: np.asarray(v, dtype=object).astype(str) for k, v in cols.items()}
    return FeatureSet(path, cols["video_id"], cols["take_id"], view, cols["participant"],
                      cols["split"], labels, feats, attrs)


def done_video_ids(path: str | Path) -> set[str]:
    """Video ids already stored in the final file or in closed shards of ``path``."""
    path = Path(path)
    done: set[str] = set()
    if path.exists():
        done.update(_read_file(path, load_features=False).video_id.tolist())
    d = shard_dir(path)
    if d.is_dir():
        for s in sorted(d.glob("shard-*.h5")):
            done.update(_read_file(s, load_features=False).video_id.tolist())
    return done


def consolidate(path: str | Path, attrs: dict[str, Any] | None = None) -> Path:
    """Merge the existing final file (if any) and all shards into ``path``; remove the shards.

    Rows are sorted by video_id so the result does not depend on shard order. Later duplicate
    ids are dropped (a video re-extracted by a second rank), keeping the first.
    """
    path = Path(path)
    parts: list[FeatureSet] = []
    if path.exists():
        parts.append(_read_file(path))
    d = shard_dir(path)
    shards = sorted(d.glob("shard-*.h5")) if d.is_dir() else []
    parts.extend(_read_file(s) for s in shards)
    if not parts:
        raise FeatureStoreError(f"{path}: nothing to consolidate (no shards in {d})")
    merged_attrs = dict(parts[-1].attrs)
    if attrs:
        merged_attrs.update(attrs)
    merged_attrs.pop("schema_version", None)
    shapes = {p.features.shape[1:] for p in parts if len(p)}
    if len(shapes) > 1:
        raise FeatureStoreError(f"{path}: shards disagree on feature shape {sorted(shapes)}")
    rows: dict[str, list] = {k: [] for k in (*ROW_FIELDS, "view", "labels", "features")}
    seen: set[str] = set()
    for p in parts:
        for i, vid in enumerate(p.video_id):
            if vid in seen:
                continue
            seen.add(vid)
            for k in rows:
                rows[k].append(getattr(p, k)[i])
    order = np.argsort(np.asarray(rows["video_id"], dtype=str), kind="stable")
    out = {k: [v[i] for i in order] for k, v in rows.items()}
    out["features"] = np.stack(out["features"]) if out["features"] else np.zeros((0, 0, 0), np.float32)
    out["labels"] = np.stack(out["labels"]) if out["labels"] else np.zeros((0, NUM_CLASSES), np.uint8)
    _write_rows(path, out, merged_attrs)
    for s in shards:
        s.unlink(missing_ok=True)
    if d.is_dir():
        remove_stale_tmp(d)
    remove_stale_tmp(path.parent)
    try:
        d.rmdir()
    except OSError:
        pass
    return path


def read_features(path: str | Path, expect: dict[str, Any] | None = None) -> FeatureSet:
    """Read a complete feature file, checking schema, shapes and finiteness.

    ``expect`` maps attribute names (e.g. ``backbone``, ``modality``) or ``dim`` / ``segments``
    to required values; a mismatch raises FeatureStoreError naming the file and the field.
    """
    path = Path(path)
    fs = _read_file(path)
    n = len(fs.video_id)
    if fs.features.ndim != 3 or fs.features.shape[0] != n:
        raise FeatureStoreError(f"{path}: features shape {fs.features.shape} is not (N={n}, T, D)")
    if fs.labels.shape != (n, NUM_CLASSES):
        raise FeatureStoreError(f"{path}: labels shape {fs.labels.shape} is not ({n}, {NUM_CLASSES})")
    bad = ~np.isfinite(fs.features).reshape(n, -1).all(axis=1)
    if bad.any():
        ids = ", ".join(fs.video_id[bad][:5])
        raise FeatureStoreError(f"{path}: {int(bad.sum())} row(s) have NaN/Inf features ({ids})")
    if len(set(fs.video_id.tolist())) != n:
        raise FeatureStoreError(f"{path}: duplicate video_id rows")
    for k, want in (expect or {}).items():
        have = fs.dim if k == "dim" else fs.segments if k == "segments" else fs.attrs.get(k)
        if have != want:
            raise FeatureStoreError(f"{path}: {k} is {have!r}, expected {want!r}")
    return fs


def join(a: FeatureSet, b: FeatureSet) -> tuple[FeatureSet, FeatureSet]:
    """Rows of ``a`` and ``b`` with the same video_id, in ``a``'s order (never join by row)."""
    ib = b.index()
    keep = np.array([v in ib for v in a.video_id], dtype=bool)
    a2 = a.select(keep)
    b2 = b.select(np.array([ib[v] for v in a2.video_id], dtype=np.int64))
    return a2, b2


def file_attrs(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}


# --------------------------------------------------------------------------------------------
# The typed recipe: how a file's features were made. Every reader uses its fields; only this
# module knows the attribute keys.

RECIPE_KEYS = ("backbone", "modality", "segments", "seed", "sampling", "crops", "decoder",
               "feature_dim", "init", "checkpoint_path", "checkpoint_sha256", "precision",
               "config_json", "code_version", "flow_recipe")
# what must agree between an existing file and a new extraction into it
COMPATIBLE_KEYS = ("backbone", "modality", "segments", "checkpoint_sha256", "init", "seed",
                   "sampling", "crops", "decoder")


@dataclass(frozen=True)
class FeatureRecipe:
    """The provenance attributes of a feature file, typed.

    ``init`` is ``"checkpoint"`` (weights from ``checkpoint_path``, whose sha256 is
    ``checkpoint_sha256``) or ``"random"`` (seeded random weights). ``config_json`` is the
    resolved ``[extract]`` config that made the file; ``flow_recipe`` the flow stage's recipe
    line (flow files only).
    """

    backbone: str
    modality: str
    segments: int
    init: str = "random"
    checkpoint_path: str = ""
    checkpoint_sha256: str = "random-init"
    seed: int = 0
    sampling: str = ""
    crops: str = ""
    decoder: str = "auto"
    feature_dim: int = 0
    precision: str = "fp32"
    config_json: str = "{}"
    code_version: str = ""
    flow_recipe: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # attributes this code does not know

    @property
    def config(self) -> dict[str, Any]:
        """The resolved extract config that made the file ({} when unreadable)."""
        try:
            out = json.loads(self.config_json or "{}")
        except (TypeError, ValueError):
            return {}
        return out if isinstance(out, dict) else {}

    @property
    def random_init(self) -> bool:
        return str(self.init).strip().lower().startswith("random")

    def to_attrs(self) -> dict[str, Any]:
        """The HDF5 attributes to write (``schema_version`` is added by the writer)."""
        out = {k: getattr(self, k) for k in RECIPE_KEYS}
        out.update(self.extra)
        return out

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> "FeatureRecipe":
        known = {k: attrs[k] for k in RECIPE_KEYS if k in attrs}
        extra = {k: v for k, v in attrs.items() if k not in RECIPE_KEYS and k != "schema_version"}
        for k in ("segments", "seed", "feature_dim"):
            if k in known:
                try:
                    known[k] = int(known[k])
                except (TypeError, ValueError):
                    raise FeatureStoreError(f"attribute {k}={known[k]!r} is not an integer") from None
        for k in ("backbone", "modality", "segments"):
            if k not in known:
                raise FeatureStoreError(f"feature file attributes lack {k!r}")
        known = {k: (v if k in ("segments", "seed", "feature_dim") else str(v)) for k, v in known.items()}
        return cls(**known, extra=extra)

    def differences(self, other: "FeatureRecipe") -> list[tuple[str, Any, Any]]:
        """``(key, mine, other's)`` for each compatibility key that differs."""
        return [(k, getattr(self, k), getattr(other, k)) for k in COMPATIBLE_KEYS
                if str(getattr(self, k)) != str(getattr(other, k))]


def is_random_init(recipe: "FeatureRecipe | dict[str, Any]") -> bool:
    """Whether a feature file's backbone had random weights."""
    if isinstance(recipe, FeatureRecipe):
        return recipe.random_init
    return str(recipe.get("init", "")).strip().lower().startswith("random")


def read_feature_recipe(path: str | Path) -> FeatureRecipe:
    """The recipe of a feature file, without reading its rows."""
    try:
        return FeatureRecipe.from_attrs(file_attrs(path))
    except FeatureStoreError as e:
        raise FeatureStoreError(f"{path}: {e}") from None
    except FileNotFoundError:
        raise FeatureStoreError(f"{path}: feature file not found") from None
    except OSError as e:
        raise FeatureStoreError(f"{path}: not a readable HDF5 file ({e})") from None
