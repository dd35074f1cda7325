"""The dataset manifest: one CSV row per video file, and the flow index that ``cprclip flow``
writes beside its flow videos.

Columns: video_id, path, take_id, view, participant, split, labels, flow (optional), skeleton
(optional: a 2D keypoint file, :mod:`pipeline.skeleton`), and the optional measurements rate
(compressions per minute) and depth (cm) of the take (:data:`MEASURES`). ``path``, ``flow`` and
``skeleton`` are relative to the manifest's folder; ``video_id`` is a safe file name
(:func:`pipeline.paths.name_problem`), since stages name output files after it. The loader
rejects bad rows with a message that names the file, the row and the problem;
:func:`parse_manifest` collects all of them. Rows are numbered by their line in the file (the
header is line 1).

A stage never rewrites the manifest: ``cprclip flow`` records what it computed in
``<flow_dir>/index.csv`` (:func:`write_flow_index`), and the loader fills a row's ``flow`` from
that index when the manifest's own ``flow`` is empty (:func:`resolve_flow`). ``cprclip pose``
does the same for skeleton files, in ``<pose_dir>/index.csv`` (:func:`resolve_pose`).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.paths import UnsafeNameError, name_problem, safe_child
from pipeline.taxonomy import LabelError, format_labels, multi_hot, parse_labels

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("video_id", "path", "take_id", "view", "participant", "split", "labels")
# narration: the take's narration file (issue 20, synth/narration.py); when empty, the loader
# takes <manifest folder>/narration/<take_id>.json if it exists (NARRATION_DIR)
COLUMNS = REQUIRED_COLUMNS + ("flow", "skeleton", "narration")
NARRATION_DIR = "narration"
# Optional measurements of the take, for regression (issue 19): column -> (unit, plausible
# range). A feedback manikin logs them; synth writes the true values of its motion.
MEASURES: dict[str, tuple[str, float, float]] = {
    "rate": ("compressions per minute", 10.0, 300.0),
    "depth": ("cm", 0.1, 15.0),
}
COLUMNS += tuple(MEASURES)
SPLITS = ("train", "val", "test")
VIEWS = (1, 2, 3, 4)
# Linux's PATH_MAX: no real path or label list is longer, and a longer field is a broken file
# (an unclosed quote, a binary file) that would otherwise reach the OS as a file name.
MAX_FIELD = 4096


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, row and problem."""


@dataclass(frozen=True)
class VideoRecord:
    """One manifest row, resolved. ``path``/``flow`` are absolute."""

    video_id: str
    path: Path
    take_id: str
    view: int
    participant: str
    split: str
    labels: tuple[int, ...]
    flow: Path | None = None
    row: int = 0  # line number in the CSV (header is line 1), for error messages
    rate: float | None = None  # measured compressions per minute of the take (MEASURES)
    depth: float | None = None  # measured mean compression depth of the take, cm
    skeleton: Path | None = None  # the 2D keypoint file (pipeline.skeleton), absolute
    narration: Path | None = None  # the take's narration file (synth/narration.py), absolute

    @property
    def multi_hot(self) -> np.ndarray:
        return multi_hot(self.labels)

    @property
    def is_single(self) -> bool:
        return len(self.labels) == 1


def _read_text(path: Path, what: str = "manifest") -> str:
    """The file as text, or a one-line ManifestError for anything that is not a UTF-8 CSV."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a folder; give the {what} CSV file") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    try:
        # utf-8-sig drops a BOM that spreadsheet programs like to add.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(
            f"{path}: not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r}); save it as UTF-8"
        ) from None
    if not text.strip():
        hint = f"; expected a header line {','.join(COLUMNS)}" if what == "manifest" else ""
        raise ManifestError(f"{path}: empty file{hint}")
    return text


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of each non-empty CSV row.

    A row whose last line is past its first holds a field with a line break: in a manifest
    that is a stray ``"`` that opened a quoted field and swallowed the lines after it.
    """
    # newline="" as the csv docs ask: csv sees every \r and \n, so line_num counts real lines.
    reader = csv.reader(io.StringIO(text, newline=""))
    prev = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # e.g. a field over the csv module's own 128 KiB limit
            raise ManifestError(f"{path}:row {prev + 1}: not a readable CSV row ({e})") from None
        first, prev = prev + 1, reader.line_num
        if fields:  # csv gives [] for a blank line
            yield first, prev, fields


def _physical_rows(text: str) -> int:
    """Non-blank lines of ``text``, split as csv splits them."""
    return sum(1 for line in io.StringIO(text, newline="") if line.strip("\r\n"))


def _resolve(base: Path, rel: str, allow_outside_root: bool) -> tuple[Path | None, str | None]:
    try:
        p = (base / rel).resolve() if not os.path.isabs(rel) else Path(rel).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # too long, symlink loop
        return None, f"path {rel!r} cannot be resolved ({e})"
    if not allow_outside_root and not p.is_relative_to(base.resolve()):
        return p, (f"path {rel!r} leaves the dataset folder {base} "
                   "(set allow_outside_root to permit)")
    return p, None


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):  # e.g. a name too long for the file system
        return False


def _header(rows: Iterator[tuple[int, int, list[str]]], path: Path) -> list[str]:
    try:
        first, last, fields = next(rows)
    except StopIteration:
        raise ManifestError(f"{path}: empty file; expected a header line {','.join(COLUMNS)}") \
            from None
    header = [h.strip() for h in fields]
    if any("\0" in h for h in header):
        raise ManifestError(f"{path}:row 1: the header contains a NUL byte; expected "
                            + ",".join(COLUMNS))
    if last != first:
        raise ManifestError(f"{path}:row 1: the header runs over lines {first}-{last} "
                            "(a stray '\"'); expected " + ",".join(COLUMNS))
    dup = next((h for i, h in enumerate(header) if h and h in header[:i]), None)
    if dup is not None:
        raise ManifestError(f"{path}:row 1: column {dup!r} appears twice in the header")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}"
        )
    return header


def _row_problem(header: list[str], fields: list[str], first: int, last: int) -> str | None:
    """What makes a row unreadable as a whole (before its values are looked at), or None."""
    named = list(zip(header, fields))
    if last != first:
        col = next((h for h, v in named if "\n" in v or "\r" in v), "?")
        return (f"field {col!r} runs over lines {first}-{last}: a stray '\"' opened a quoted "
                "field here and swallowed the lines after it; remove it or close the quotes")
    extra = [v for v in fields[len(header):] if v.strip()]
    needed = max(header.index(c) for c in REQUIRED_COLUMNS) + 1
    if len(fields) < needed:  # a trailing optional column may be left off, a required one not
        return f"{len(fields)} fields but the header has {len(header)}"
    if extra:
        return (f"{len(fields)} fields but the header has {len(header)} (an unquoted ',' "
                f"inside a field? extra: {extra[0][:40]!r})")
    for h, v in named:
        if "\0" in v:  # no file name or label holds one: a binary file or a UTF-16 fragment
            return f"field {h!r} contains a NUL byte"
        if len(v) > MAX_FIELD:
            return f"field {h!r} is {len(v)} characters long (at most {MAX_FIELD})"
    return None


def _measures(row: dict[str, str]) -> tuple[dict[str, float], str | None]:
    """The optional measurement columns of a row (:data:`MEASURES`) as numbers: ({name: value}
    for the filled ones, None), or ({}, the problem) for a value that is not a finite, positive
    number in its plausible range."""
    out: dict[str, float] = {}
    for name, (unit, lo, hi) in MEASURES.items():
        text = row.get(name, "")
        if not text:
            continue
        try:
            v = float(text)
        except ValueError:
            return {}, f"{name} {text!r} is not a number ({unit})"
        if not math.isfinite(v) or v <= 0:
            return {}, f"{name} {text!r} must be a finite number above 0 ({unit})"
        if not lo <= v <= hi:
            hint = " (a depth in mm? give cm)" if name == "depth" and v > hi else ""
            return {}, f"{name} {text!r} is outside the plausible range {lo:g}-{hi:g} {unit}{hint}"
        out[name] = v
    return out, None


def _narration(base: Path, row: dict[str, str], allow_outside_root: bool,
               check_files: bool) -> tuple[Path | None, str | None]:
    """The row's narration file (``narration`` column, relative to the manifest), or
    ``<base>/narration/<take_id>.json`` when the column is empty and that file exists (a
    dataset narrated after its manifest was written: ``cprclip narrate``); (None, problem) for
    a path that cannot be used."""
    text = row.get("narration", "")
    if not text:
        take = row["take_id"] or row["video_id"]
        if name_problem(take):
            return None, None
        default = base / NARRATION_DIR / f"{take}.json"
        return (default.resolve() if _is_file(default) else None), None
    path, problem = _resolve(base, text, allow_outside_root)
    if problem:
        return None, f"narration {problem}"
    if check_files and not _is_file(path):
        return None, f"narration file {path} not found"
    return path, None


def _measure_text(v: float | None) -> str:
    """A measurement as the writer stores it: short, exact enough (0.001), "" when absent."""
    return "" if v is None else f"{v:.3f}".rstrip("0").rstrip(".")


def parse_manifest(
    path: str | Path, check_files: bool = True, allow_outside_root: bool = False,
    flow_dir: str | Path | None = None, use_flow_index: bool = True,
    pose_dir: str | Path | None = None, use_pose_index: bool = True,
) -> tuple[list[VideoRecord], list[str]]:
    """Parse a manifest; return the good records and one error line per bad row.

    A row with an error is left out of the records; cross-row problems (duplicate ids, views of
    one take that disagree or repeat) are reported on the later row. Problems with the file as
    a whole (missing, a folder, not UTF-8, NUL bytes, no header) raise ManifestError.

    Rows whose ``flow`` column is empty get the flow video that ``cprclip flow`` recorded in
    ``<flow_dir>/index.csv`` (default ``flow_dir``: ``<manifest folder>/flow``), unless
    ``use_flow_index`` is false. Likewise rows whose ``skeleton`` is empty get the skeleton
    file that ``cprclip pose`` recorded in ``<pose_dir>/index.csv`` (default: ``pose/`` beside
    the manifest), unless ``use_pose_index`` is false.
    """
    path = Path(path)
    text = _read_text(path)
    base = path.parent
    rows = _csv_rows(text, path)
    header = _header(rows, path)
    records: list[VideoRecord] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    takes: dict[str, VideoRecord] = {}
    views: dict[tuple[str, int], VideoRecord] = {}
    n_rows = 0
    broken_quote = False
    for i, last, fields in rows:
        n_rows += 1
        where = f"{path}:row {i}"
        problem = _row_problem(header, fields, i, last)
        if problem:
            broken_quote |= last != i
            errors.append(f"{where}: {problem}")
            continue
        row = {h: v.strip() for h, v in zip(header, fields)}
        row.update({h: "" for h in header[len(fields):]})  # a trailing optional column left off
        vid = row["video_id"]
        if not vid:
            errors.append(f"{where}: empty video_id")
            continue
        unsafe = name_problem(vid)
        if unsafe:
            errors.append(f"{where}: video_id {vid!r} is not a safe file name: it {unsafe}")
            continue
        where = f"{where} ({vid})"
        if vid in seen:
            errors.append(f"{where}: duplicate video_id, first seen on row {seen[vid]}")
            continue
        seen[vid] = i
        try:
            labels = parse_labels(row["labels"])
        except LabelError as e:
            errors.append(f"{where}: labels {row['labels']!r}: {e}")
            continue
        try:
            view = int(row["view"])
        except ValueError:
            view = -1
        if view not in VIEWS:
            errors.append(f"{where}: view {row['view']!r} is not one of 1..4")
            continue
        if row["split"] not in SPLITS:
            errors.append(f"{where}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
            continue
        if not row["path"]:
            errors.append(f"{where}: empty path")
            continue
        video, problem = _resolve(base, row["path"], allow_outside_root)
        if problem:
            errors.append(f"{where}: {problem}")
            continue
        if check_files and not _is_file(video):
            errors.append(f"{where}: video file {video} not found")
            continue
        flow = None
        if row.get("flow"):
            flow, problem = _resolve(base, row["flow"], allow_outside_root)
            if problem:
                errors.append(f"{where}: flow {problem}")
                continue
        skeleton = None
        if row.get("skeleton"):
            skeleton, problem = _resolve(base, row["skeleton"], allow_outside_root)
            if problem:
                errors.append(f"{where}: skeleton {problem}")
                continue
            if check_files and not _is_file(skeleton):
                errors.append(f"{where}: skeleton file {skeleton} not found")
                continue
        measures, problem = _measures(row)
        if problem:
            errors.append(f"{where}: {problem}")
            continue
        narration, problem = _narration(base, row, allow_outside_root, check_files)
        if problem:
            errors.append(f"{where}: {problem}")
            continue
        rec = VideoRecord(vid, video, row["take_id"] or vid, view, row["participant"],
                          row["split"], labels, flow, i)
        rec = replace(rec, skeleton=skeleton, narration=narration, **measures)
        first = takes.get(rec.take_id)
        if first is not None:
            for field in ("labels", "participant", "split", *MEASURES, "narration"):
                a, b = getattr(first, field), getattr(rec, field)
                if a != b:
                    shown = (format_labels(a), format_labels(b)) if field == "labels" else (a, b)
                    if field == "narration":
                        shown = (str(a or ""), str(b or ""))
                    errors.append(
                        f"{where}: take {rec.take_id!r} has {field} {shown[1]!r} but row "
                        f"{first.row} ({first.video_id}) says {shown[0]!r}"
                    )
                    break
            else:
                other = views.get((rec.take_id, view))
                if other is not None:
                    # Two files claiming one camera of one take: a copy-paste slip that would
                    # feed the same view twice to every multi-view model.
                    errors.append(f"{where}: take {rec.take_id!r} repeats view {view}, already "
                                  f"given by row {other.row} ({other.video_id})")
                else:
                    views[(rec.take_id, view)] = rec
                    records.append(rec)
            continue
        takes[rec.take_id] = rec
        views[(rec.take_id, view)] = rec
        records.append(rec)
    # Every non-blank line after the header must be one row. Rows over several lines are named
    # above; this guards against any other way for lines to vanish into a field.
    lines = _physical_rows(text) - 1
    if lines != n_rows and not broken_quote:
        errors.append(f"{path}: {lines} lines after the header but {n_rows} CSV rows; "
                      "a quote ('\"') is out of place")
    if not records and not errors:
        errors.append(f"{path}: no rows")
    if use_flow_index and records:
        records = resolve_flow(records, flow_dir if flow_dir else default_flow_dir(path))
    if use_pose_index and records:
        records = resolve_pose(records, pose_dir if pose_dir else default_pose_dir(path))
    return records, errors


def load_manifest(
    path: str | Path, check_files: bool = True, allow_outside_root: bool = False,
    flow_dir: str | Path | None = None, pose_dir: str | Path | None = None,
) -> list[VideoRecord]:
    """Load a manifest, raising ManifestError on the first bad row (flow and skeleton indexes:
    see parse_manifest)."""
    records, errors = parse_manifest(path, check_files, allow_outside_root, flow_dir,
                                     pose_dir=pose_dir)
    if errors:
        more = (f" (and {len(errors) - 1} more problem(s); run 'cprclip manifest check')"
                if len(errors) > 1 else "")
        raise ManifestError(errors[0] + more)
    return records


def write_manifest(path: str | Path, records: Iterable[VideoRecord]) -> None:
    """Write records with paths relative to the manifest folder; atomic (tmp + rename).

    For the stage that makes a dataset (synth); no stage rewrites a manifest it reads."""
    path = Path(path)
    base = path.parent.resolve()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in records:
                rel = lambda p: os.path.relpath(Path(p).resolve(), base) if p else ""  # noqa: E731
                w.writerow([r.video_id, rel(r.path), r.take_id, r.view, r.participant, r.split,
                            format_labels(r.labels), rel(r.flow), rel(r.skeleton),
                            rel(r.narration)]
                           + [_measure_text(getattr(r, k)) for k in MEASURES])
        os.replace(tmp, path)
    except OSError as e:  # e.g. a full disk: the old manifest stays, no temporary, name the file
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


def manifest_hash(path: str | Path) -> str:
    from pipeline.provenance import sha256_file

    return sha256_file(path)


# --------------------------------------------------------------------------------------------
# The flow index: what `cprclip flow` computed, keyed by video_id, beside the flow videos.

FLOW_INDEX = "index.csv"
FLOW_INDEX_COLUMNS = ("video_id", "flow", "recipe", "source", "source_size", "source_mtime_ns")


@dataclass(frozen=True)
class FlowEntry:
    """One flow video of the index. ``flow`` and ``source`` are absolute paths; the source's
    size and mtime tell whether the video changed after its flow was computed."""

    video_id: str
    flow: Path
    recipe: str
    source: Path
    source_size: int
    source_mtime_ns: int

    def is_current(self, video: Path) -> bool:
        """True when this flow was made from ``video`` as it is now. A video that is gone cannot
        be compared, so its flow still counts (extract then fails on the video itself)."""
        if Path(video).resolve() != self.source:
            return False
        try:
            st = Path(video).stat()
        except OSError:
            return True
        return (st.st_size, st.st_mtime_ns) == (self.source_size, self.source_mtime_ns)


def default_flow_dir(manifest: str | Path) -> Path:
    """Where ``cprclip flow`` writes when ``flow_dir`` is not set: ``<manifest folder>/flow``."""
    return Path(manifest).parent / "flow"


def flow_index_path(flow_dir: str | Path) -> Path:
    return Path(flow_dir) / FLOW_INDEX


def flow_entry(video_id: str, flow: Path, recipe: str, source: Path) -> FlowEntry:
    """The index entry for a flow video just computed from ``source``."""
    st = Path(source).stat()
    return FlowEntry(video_id, Path(flow).resolve(), recipe, Path(source).resolve(), st.st_size,
                     st.st_mtime_ns)


def _read_output_index(folder: str | Path, kind: str, columns: tuple[str, ...], entry_cls):
    """``{video_id: entry}`` from ``<folder>/index.csv`` of a stage's outputs (flow videos,
    skeleton files); {} when there is none yet. Entries are ``entry_cls(video_id, file, recipe,
    source, size, mtime_ns)`` with absolute paths. Raises ManifestError (one line naming the
    file and row) for an index that is not ours."""
    folder = Path(folder)
    path = folder / FLOW_INDEX
    if not path.is_file():
        return {}
    redo = f"; delete it and rerun 'cprclip {kind}'"
    try:
        text = _read_text(path, f"{kind} index")
    except ManifestError as e:
        raise ManifestError(f"{e}{redo}") from None
    rows = _csv_rows(text, path)
    header = next(rows, (1, 1, []))[2]
    if tuple(header) != columns:
        raise ManifestError(f"{path}: not a {kind} index (header {','.join(header)!r}){redo}")
    root = folder.resolve()
    out: dict = {}
    for i, last, fields in rows:
        try:
            if last != i or len(fields) != len(columns) or "\0" in "".join(fields):
                raise ValueError(f"not {len(columns)} plain fields on one line")
            vid, name, recipe, source, size, mtime = fields
            # Entries name files inside the stage's folder only, so an edited index cannot
            # point a stage at an arbitrary path.
            out[vid] = entry_cls(vid, safe_child(root, name), recipe,
                                 Path(os.path.normpath(root / source)), int(size), int(mtime))
        except (ValueError, UnsafeNameError) as e:
            raise ManifestError(f"{path}:row {i}: {e}{redo}") from None
    return out


def _write_output_index(folder: str | Path, columns: tuple[str, ...], entries: Iterable) -> Path:
    """Write ``<folder>/index.csv`` atomically (complete or absent), sorted by video_id, paths
    relative to the folder (a dataset moved with its outputs still matches)."""
    from dataclasses import astuple

    from pipeline.atomic import write_atomic

    folder = Path(folder)
    root = folder.resolve()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for e in sorted(entries, key=lambda e: e.video_id):
        vid, file, recipe, source, size, mtime = astuple(e)
        w.writerow([vid, os.path.relpath(file, root), recipe, os.path.relpath(source, root),
                    size, mtime])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FLOW_INDEX
    write_atomic(path, buf.getvalue())
    return path


def read_flow_index(flow_dir: str | Path) -> dict[str, FlowEntry]:
    """``{video_id: FlowEntry}`` from ``<flow_dir>/index.csv``; {} when there is none yet.

    Raises ManifestError (one line naming the file and row) for an index that is not ours."""
    return _read_output_index(flow_dir, "flow", FLOW_INDEX_COLUMNS, FlowEntry)


def write_flow_index(flow_dir: str | Path, entries: Iterable[FlowEntry]) -> Path:
    """Write ``<flow_dir>/index.csv`` atomically (complete or absent), sorted by video_id.
    Paths are stored relative to the flow folder, so a dataset moved with its flow still
    matches."""
    return _write_output_index(flow_dir, FLOW_INDEX_COLUMNS, entries)


def resolve_flow(records: list[VideoRecord], flow_dir: str | Path) -> list[VideoRecord]:
    """Records with an empty ``flow`` get the flow video of ``<flow_dir>/index.csv`` for their
    video_id, when it was computed from the video as it is now. The manifest's own ``flow``
    always wins. The one place that joins the index to the manifest (extract and finetune read
    records through the loader)."""
    index = read_flow_index(flow_dir)
    if not index:
        return records
    out, stale = [], []
    for r in records:
        e = index.get(r.video_id) if r.flow is None else None
        if e is not None:
            if e.is_current(r.path):
                r = replace(r, flow=e.flow)
            else:
                stale.append(r.video_id)
        out.append(r)
    if stale:
        log.warning("%s: the flow of %d video(s) was computed from an older file (%s%s); "
                    "rerun 'cprclip flow'", flow_index_path(flow_dir), len(stale),
                    ", ".join(stale[:3]), ", ..." if len(stale) > 3 else "")
    return out


# --------------------------------------------------------------------------------------------
# The pose index: the skeleton files `cprclip pose` estimated, keyed by video_id, beside them.
# The same shape as the flow index: the manifest is never rewritten, the loader joins.

POSE_INDEX = "index.csv"
POSE_INDEX_COLUMNS = ("video_id", "skeleton", "recipe", "source", "source_size",
                      "source_mtime_ns")


@dataclass(frozen=True)
class PoseEntry:
    """One skeleton file of the pose index. ``skeleton`` and ``source`` (the video) are
    absolute; the video's size and mtime tell whether it changed after it was estimated."""

    video_id: str
    skeleton: Path
    recipe: str
    source: Path
    source_size: int
    source_mtime_ns: int

    def is_current(self, video: Path) -> bool:
        """True when this skeleton was estimated from ``video`` as it is now (a video that is
        gone cannot be compared, so its skeleton still counts)."""
        if Path(video).resolve() != self.source:
            return False
        try:
            st = Path(video).stat()
        except OSError:
            return True
        return (st.st_size, st.st_mtime_ns) == (self.source_size, self.source_mtime_ns)


def default_pose_dir(manifest: str | Path) -> Path:
    """Where ``cprclip pose`` writes when ``pose_dir`` is not set: ``<manifest folder>/pose``."""
    return Path(manifest).parent / "pose"


def pose_index_path(pose_dir: str | Path) -> Path:
    return Path(pose_dir) / POSE_INDEX


def pose_entry(video_id: str, skeleton: Path, recipe: str, source: Path) -> PoseEntry:
    """The index entry for a skeleton file just estimated from the video ``source``."""
    st = Path(source).stat()
    return PoseEntry(video_id, Path(skeleton).resolve(), recipe, Path(source).resolve(),
                     st.st_size, st.st_mtime_ns)


def read_pose_index(pose_dir: str | Path) -> dict[str, PoseEntry]:
    """``{video_id: PoseEntry}`` from ``<pose_dir>/index.csv``; {} when there is none yet.

    Raises ManifestError (one line naming the file and row) for an index that is not ours."""
    return _read_output_index(pose_dir, "pose", POSE_INDEX_COLUMNS, PoseEntry)


def write_pose_index(pose_dir: str | Path, entries: Iterable[PoseEntry]) -> Path:
    """Write ``<pose_dir>/index.csv`` atomically, sorted by video_id, paths relative to the
    pose folder (a dataset moved with its skeletons still matches)."""
    return _write_output_index(pose_dir, POSE_INDEX_COLUMNS, entries)


def resolve_pose(records: list[VideoRecord], pose_dir: str | Path) -> list[VideoRecord]:
    """Records with an empty ``skeleton`` get the skeleton file of ``<pose_dir>/index.csv``
    for their video_id, when it was estimated from the video as it is now. The manifest's own
    ``skeleton`` always wins. The one place that joins the pose index to the manifest."""
    index = read_pose_index(pose_dir)
    if not index:
        return records
    out, stale = [], []
    for r in records:
        e = index.get(r.video_id) if r.skeleton is None else None
        if e is not None:
            if e.is_current(r.path):
                r = replace(r, skeleton=e.skeleton)
            else:
                stale.append(r.video_id)
        out.append(r)
    if stale:
        log.warning("%s: the skeletons of %d video(s) were estimated from an older file (%s%s); "
                    "rerun 'cprclip pose'", pose_index_path(pose_dir), len(stale),
                    ", ".join(stale[:3]), ", ..." if len(stale) > 3 else "")
    return out
