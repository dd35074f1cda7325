"""The dataset manifest: one CSV row per video file (DESIGN.md, "Manifest").

Columns: video_id, path, take_id, view, participant, split, labels, flow (optional).
``path`` and ``flow`` are relative to the manifest's folder. The loader rejects bad rows with a
message that names the file, the row and the problem; ``check_manifest`` collects all of them.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.taxonomy import LabelError, format_labels, multi_hot, parse_labels

REQUIRED_COLUMNS = ("video_id", "path", "take_id", "view", "participant", "split", "labels")
COLUMNS = REQUIRED_COLUMNS + ("flow",)
SPLITS = ("train", "val", "test")
VIEWS = (1, 2, 3, 4)


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

    @property
    def multi_hot(self) -> np.ndarray:
        return multi_hot(self.labels)

    @property
    def is_single(self) -> bool:
        return len(self.labels) == 1


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    try:
        # utf-8-sig drops a BOM that spreadsheet programs like to add.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(
            f"{path}: not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r}); save it as UTF-8"
        ) from None


def _resolve(base: Path, rel: str, allow_outside_root: bool) -> tuple[Path, str | None]:
    p = (base / rel).resolve() if not os.path.isabs(rel) else Path(rel).resolve()
    if not allow_outside_root and not p.is_relative_to(base.resolve()):
        return p, f"path {rel!r} leaves the dataset folder {base} (set allow_outside_root to permit)"
    return p, None


def parse_manifest(
    path: str | Path, check_files: bool = True, allow_outside_root: bool = False
) -> tuple[list[VideoRecord], list[str]]:
    """Parse a manifest; return the good records and one error line per bad row.

    A row with an error is left out of the records; cross-row problems (duplicate ids, views of
    one take that disagree) are reported on the later row.
    """
    path = Path(path)
    text = _read_text(path)
    base = path.parent
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}"
        )
    reader.fieldnames = header
    records: list[VideoRecord] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    takes: dict[str, VideoRecord] = {}
    for i, row in enumerate(reader, start=2):
        where = f"{path}:row {i}"
        row = {k: (v or "").strip() for k, v in row.items() if k is not None}
        vid = row["video_id"]
        if not vid:
            errors.append(f"{where}: empty video_id")
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
        if check_files and not video.is_file():
            errors.append(f"{where}: video file {video} not found")
            continue
        flow = None
        if row.get("flow"):
            flow, problem = _resolve(base, row["flow"], allow_outside_root)
            if problem:
                errors.append(f"{where}: flow {problem}")
                continue
        rec = VideoRecord(vid, video, row["take_id"] or vid, view, row["participant"],
                          row["split"], labels, flow, i)
        first = takes.get(rec.take_id)
        if first is not None:
            for field in ("labels", "participant", "split"):
                a, b = getattr(first, field), getattr(rec, field)
                if a != b:
                    shown = (format_labels(a), format_labels(b)) if field == "labels" else (a, b)
                    errors.append(
                        f"{where}: take {rec.take_id!r} has {field} {shown[1]!r} but row "
                        f"{first.row} ({first.video_id}) says {shown[0]!r}"
                    )
                    break
            else:
                records.append(rec)
            continue
        takes[rec.take_id] = rec
        records.append(rec)
    if not records and not errors:
        errors.append(f"{path}: no rows")
    return records, errors


def load_manifest(
    path: str | Path, check_files: bool = True, allow_outside_root: bool = False
) -> list[VideoRecord]:
    """Load a manifest, raising ManifestError on the first bad row."""
    records, errors = parse_manifest(path, check_files, allow_outside_root)
    if errors:
        more = f" (and {len(errors) - 1} more problem(s); run 'cprclip manifest check')" if len(errors) > 1 else ""
        raise ManifestError(errors[0] + more)
    return records


def write_manifest(path: str | Path, records: Iterable[VideoRecord]) -> None:
    """Write records with paths relative to the manifest folder; atomic (tmp + rename)."""
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
                            format_labels(r.labels), rel(r.flow)])
        os.replace(tmp, path)
    except OSError as e:  # e.g. a full disk: the old manifest stays, no temporary, name the file
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


def with_flow(records: list[VideoRecord], flows: dict[str, Path]) -> list[VideoRecord]:
    """Return records with the ``flow`` field set from ``{video_id: path}``."""
    return [replace(r, flow=Path(flows[r.video_id])) if r.video_id in flows else r for r in records]


def manifest_hash(path: str | Path) -> str:
    from pipeline.provenance import sha256_file

    return sha256_file(path)
