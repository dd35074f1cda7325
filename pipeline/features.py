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
# skeleton: 2D keypoint files (pipeline/skeleton.py) through an ST-GCN (extract/stgcn.py)
Modality = Literal["rgb", "flow", "skeleton"]
MODALITIES: tuple[str, ...] = get_args(Modality)
FLOW_CLIP_LEN = 5  # flow frames per segment: 5 stacked (x, y) pairs = 10 channels, TSN's flow
# take_id / participant of rows whose source does not say (features imported from the authors'
# pickles, extract/authors_features.py); their view is UNKNOWN_VIEW. Views of one take cannot
# be fused for such rows: see takes_known.
UNKNOWN = "unknown"
UNKNOWN_VIEW = 0


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


def _first_line(e: BaseException) -> str:
    """h5py's messages run over several lines (a timestamp, the HDF5 error stack)."""
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def _read_file(path: Path, load_features: bool = True) -> FeatureSet:
    if path.is_dir():
        raise FeatureStoreError(f"{path}: is a folder, not a feature file")
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise FeatureStoreError(f"{path}: feature file not found") from None
    except OSError as e:
        raise FeatureStoreError(f"{path}: not a readable HDF5 file ({_first_line(e)})") from None
    with f:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        version = attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            raise FeatureStoreError(
                f"{path}: schema_version {version!r}, this code reads {SCHEMA_VERSION}; "
                "re-extract the features")
        wanted = (*ROW_FIELDS, "view", "labels", "features")
        missing = [k for k in wanted if not isinstance(f.get(k), h5py.Dataset)]
        if missing:  # absent, or a group where the dataset belongs
            raise FeatureStoreError(f"{path}: missing dataset(s) {', '.join(missing)}")
        try:
            cols = {k: f[k].asstr()[()] for k in ROW_FIELDS}
            view = f["view"][()]
            labels = np.asarray(f["labels"][()])
            feats = f["features"][()] if load_features else np.zeros((len(view), 0, 0), np.float32)
        except (TypeError, ValueError, OSError) as e:  # text where numbers belong, bad blocks
            raise FeatureStoreError(f"{path}: a dataset cannot be read ({_first_line(e)})") from None
        if labels.dtype.kind not in "biu":
            raise FeatureStoreError(f"{path}: labels are {labels.dtype}, not 0/1 integers")
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


def write_feature_set(path: str | Path, rows: FeatureSet, recipe: "FeatureRecipe") -> Path:
    """Write all of ``rows`` as one complete file at ``path`` (atomic; replaces a file there).

    For converters that hold every row in memory (extract/authors_features.py); extraction
    uses :class:`ShardWriter` and :func:`consolidate`. The checks are those of
    :meth:`ShardWriter.add` and :func:`read_features`; rows are stored sorted by video_id, as
    :func:`consolidate` stores them.
    """
    path = Path(path)
    n = len(rows.video_id)
    feats = np.asarray(rows.features, dtype=np.float32)
    if feats.ndim != 3 or feats.shape[0] != n:
        raise FeatureStoreError(f"{path}: features shape {feats.shape} is not (N={n}, T, D)")
    labels = np.asarray(rows.labels, dtype=np.uint8)
    if labels.shape != (n, NUM_CLASSES):
        raise FeatureStoreError(f"{path}: labels shape {labels.shape} is not ({n}, {NUM_CLASSES})")
    if not np.isfinite(feats).all():
        raise FeatureStoreError(f"{path}: features contain NaN or Inf")
    if len(set(rows.video_id.tolist())) != n:
        raise FeatureStoreError(f"{path}: duplicate video_id rows")
    order = np.argsort(np.asarray(rows.video_id, dtype=str), kind="stable")
    out = {k: np.asarray(getattr(rows, k))[order] for k in (*ROW_FIELDS, "view")}
    out["labels"], out["features"] = labels[order], feats[order]
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_rows(path, out, recipe.to_attrs())
    return path


def takes_known(take_id: np.ndarray) -> bool:
    """Whether rows say which recording they belong to (no :data:`UNKNOWN` take), so that the
    views of a take can be fused."""
    return not bool(np.any(np.asarray(take_id) == UNKNOWN))


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
    fs.recipe  # noqa: B018 - its provenance attributes are readable (raises naming the file)
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
# Following the manifest (docs/design.md: "a changed label or a removed row is never served from
# an older feature file"). A row's features depend only on its video; its take, view,
# participant, split and labels are the manifest's, which a user may correct after extraction.

ROW_META = ("take_id", "view", "participant", "split", "labels")


@dataclass
class ManifestDiff:
    """How a feature file's rows differ from a manifest, joined on video_id.

    ``changed``: field -> [(video_id, stored value, manifest value)] for the fields of
    :data:`ROW_META`; ``dropped``: video_ids stored but no longer in the manifest.
    """

    changed: dict[str, list[tuple[str, str, str]]]
    dropped: list[str]

    def __bool__(self) -> bool:
        return bool(self.dropped) or any(self.changed.values())

    @property
    def relabelled(self) -> int:
        """Rows with any field changed."""
        return len({vid for rows in self.changed.values() for vid, _, _ in rows})

    def describe(self, show: int = 3) -> str:
        """One line: what changed, with the first ``show`` video ids of each kind."""
        parts = []
        for k in ROW_META:
            rows = self.changed.get(k, [])
            if rows:
                ex = ", ".join(f"{v}: {a} -> {b}" for v, a, b in rows[:show])
                more = ", ..." if len(rows) > show else ""
                parts.append(f"{k} of {len(rows)} video(s) changed ({ex}{more})")
        if self.dropped:
            more = ", ..." if len(self.dropped) > show else ""
            parts.append(f"{len(self.dropped)} row(s) no longer in the manifest "
                         f"({', '.join(self.dropped[:show])}{more})")
        return "; ".join(parts) if parts else "rows match the manifest"


def _labels_text(labels: np.ndarray) -> str:
    """A multi-hot row as the manifest writes it: class ids joined by ';'."""
    return ";".join(str(int(c)) for c in np.flatnonzero(labels))


def _manifest_rows(records: Any) -> dict[str, dict[str, Any]]:
    """video_id -> the row fields a feature file stores, from manifest records
    (:class:`pipeline.manifest.VideoRecord`), or from a manifest path (parsed without checking
    that the video files exist; a bad row raises ManifestError, as extract does)."""
    if isinstance(records, (str, Path)):
        from pipeline.manifest import load_manifest

        records = load_manifest(records, check_files=False, allow_outside_root=True)
    return {r.video_id: dict(take_id=str(r.take_id), view=int(r.view),
                             participant=str(r.participant), split=str(r.split),
                             labels=np.asarray(r.multi_hot, dtype=np.uint8))
            for r in records}


def manifest_diff(fs: FeatureSet, records: Any) -> ManifestDiff:
    """How the rows of ``fs`` differ from manifest ``records`` (records or a manifest path)."""
    return _diff(fs, _manifest_rows(records))


def _diff(fs: FeatureSet, want: dict[str, dict[str, Any]]) -> ManifestDiff:
    changed: dict[str, list[tuple[str, str, str]]] = {k: [] for k in ROW_META}
    dropped: list[str] = []
    for i, vid in enumerate(fs.video_id.tolist()):
        m = want.get(vid)
        if m is None:
            dropped.append(vid)
            continue
        for k in ROW_META:
            have = getattr(fs, k)[i]
            if k == "labels":
                if not np.array_equal(np.asarray(have, dtype=np.uint8), m[k]):
                    changed[k].append((vid, _labels_text(have), _labels_text(m[k])))
            elif str(have) != str(m[k]):
                changed[k].append((vid, str(have), str(m[k])))
    return ManifestDiff(changed, dropped)


def _with_manifest(fs: FeatureSet, want: dict[str, dict[str, Any]]) -> FeatureSet:
    """Rows of ``fs`` in ``want``, their metadata replaced by ``want``'s; features untouched."""
    keep = np.array([v in want for v in fs.video_id.tolist()], dtype=bool)
    out = fs.select(keep)
    rows = [want[v] for v in out.video_id.tolist()]
    n = len(rows)
    out.take_id = np.asarray([r["take_id"] for r in rows], dtype=object).astype(str)
    out.participant = np.asarray([r["participant"] for r in rows], dtype=object).astype(str)
    out.split = np.asarray([r["split"] for r in rows], dtype=object).astype(str)
    out.view = np.asarray([r["view"] for r in rows], dtype=fs.view.dtype if n else np.int16)
    out.labels = (np.stack([r["labels"] for r in rows]).astype(np.uint8) if n
                  else np.zeros((0, NUM_CLASSES), np.uint8))
    return out


def align_to_manifest(fs: FeatureSet, records: Any) -> FeatureSet:
    """The rows of ``fs`` that manifest ``records`` lists (records, or a manifest path), with
    take_id, view, participant, split and labels taken from the manifest (joined on video_id).

    For readers (train, eval): a label corrected or a row removed in the manifest takes effect
    without re-extracting, and the log says what differed from the file.
    """
    want = _manifest_rows(records)
    diff = _diff(fs, want)
    if diff:
        import logging

        logging.getLogger(__name__).warning("%s: following the manifest: %s", fs.path,
                                            diff.describe())
    return _with_manifest(fs, want)


def sync_to_manifest(path: str | Path, records: Any) -> ManifestDiff:
    """Make the feature file at ``path`` follow manifest ``records``: rows of videos no longer in
    the manifest are removed and the other rows' take_id, view, participant, split and labels
    are set to the manifest's; features are never recomputed. The file is rewritten atomically
    (attributes kept), and only when something differs. Returns what differed."""
    path = Path(path)
    fs = read_features(path)
    want = _manifest_rows(records)
    diff = _diff(fs, want)
    if not diff:
        return diff
    out = _with_manifest(fs, want)
    rows = {k: getattr(out, k) for k in (*ROW_FIELDS, "view", "labels", "features")}
    if not len(out):  # keep the (0, T, D) shape of an emptied file
        rows["features"] = np.zeros((0, *fs.features.shape[1:]), np.float32)
    attrs = {k: v for k, v in fs.attrs.items() if k != "schema_version"}
    _write_rows(path, rows, attrs)
    return diff


# --------------------------------------------------------------------------------------------
# The typed recipe: how a file's features were made. Every reader uses its fields; only this
# module knows the attribute keys.

RECIPE_KEYS = ("backbone", "modality", "segments", "seed", "sampling", "crops", "decoder",
               "feature_dim", "init", "checkpoint_path", "checkpoint_sha256", "precision",
               "config_json", "code_version", "flow_recipe", "skeleton_source")
# what must agree between an existing file and a new extraction into it (skeleton_source: noisy
# and clean keypoints of one dataset must never share a file)
COMPATIBLE_KEYS = ("backbone", "modality", "segments", "checkpoint_sha256", "init", "seed",
                   "sampling", "crops", "decoder", "skeleton_source")


@dataclass(frozen=True)
class FeatureRecipe:
    """The provenance attributes of a feature file, typed.

    ``init`` is ``"checkpoint"`` (weights from ``checkpoint_path``, whose sha256 is
    ``checkpoint_sha256``) or ``"random"`` (seeded random weights). ``config_json`` is the
    resolved ``[extract]`` config that made the file; ``flow_recipe`` the flow stage's recipe
    line (flow files only); ``skeleton_source`` the ``source`` of the skeleton files read
    (e.g. ``synth-noisy``, ``synth-clean``, several joined by ``+``; skeleton files only).
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
    skeleton_source: str = ""  # skeleton files only: who made the keypoints (their ``source``)
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
        raise FeatureStoreError(f"{path}: not a readable HDF5 file ({_first_line(e)})") from None
