"""The frame dataset on disk: one folder per class plus a metadata CSV (docs/frames.md).

::

    <frames_dir>/
      metadata.csv           path,class,video_id,frame_id,caption,split,participant
      <class>/<video_id>_<frame>.jpg
      frames.json            (``cprclip frames`` only) the recipe, so a rerun resumes
      failures.csv           (``cprclip frames`` only) videos that could not be read

Columns of ``metadata.csv`` (one row per image):

- ``path``: the image, relative to the folder, inside its own class folder (``<class>/<file>``);
  ``.jpg``, ``.jpeg`` or ``.png``;
- ``class``: the class folder's name, one safe file name; the classes are the distinct names in
  natural order (``"2"`` before ``"10"``; ``cprclip frames`` writes ``00_correct`` ...
  ``13_random_position_pressing``, the taxonomy's order);
- ``video_id`` and ``frame_id``: where the frame came from (``frame_id`` an integer >= 0);
  frames of one video are scored together for the per-video accuracy;
- ``caption``: the text of the class; one caption per class, every row of a class the same;
- ``split``: ``train``, ``val`` or ``test``; training uses ``train`` and picks the best
  checkpoint on ``val`` (the held-out participants);
- ``participant`` (optional, may be empty): the person, to check that val people are held out.

The reader checks every row and reports each bad one as ``file:row N: field 'x': problem``
(:func:`parse_metadata`); :func:`load_frame_dataset` raises on the first, with the count.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import write_atomic
from pipeline.manifest import SPLITS, ManifestError, _csv_rows, _read_text
from pipeline.paths import name_problem
from pipeline.taxonomy import CLASSES

METADATA = "metadata.csv"
COLUMNS = ("path", "class", "video_id", "frame_id", "caption", "split", "participant")
REQUIRED = COLUMNS[:-1]  # participant may be left out
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class FrameDataError(ValueError):
    """A frame dataset that cannot be used; the message names the file, row and field."""


@dataclass(frozen=True)
class FrameRow:
    """One image of the dataset. ``path`` is absolute; ``row`` its line in the CSV."""

    path: Path
    cls: str
    video_id: str
    frame_id: int
    caption: str
    split: str
    participant: str
    row: int


@dataclass(frozen=True)
class FrameDataset:
    """The rows of a frame dataset and its C classes (natural order) with one caption each."""

    root: Path
    rows: tuple[FrameRow, ...]
    classes: tuple[str, ...]
    captions: tuple[str, ...]

    def label(self, row: FrameRow) -> int:
        return self.classes.index(row.cls)

    def split(self, name: str) -> list[FrameRow]:
        return [r for r in self.rows if r.split == name]


def class_folder(k: int) -> str:
    """The folder name of taxonomy class ``k``: ``01_overlap_hands``."""
    return f"{k:02d}_{re.sub(r'[^a-z0-9]+', '_', CLASSES[k].lower()).strip('_')}"


def caption_for(k: int, kinds: tuple[str, ...]) -> str:
    """The one caption of taxonomy class ``k``: its test-wording prompt sentences
    (train/prompts.py) of the given kinds, joined."""
    from train.prompts import eval_prompt

    return " ".join(eval_prompt((k,), kinds))


def natural_key(name: str) -> tuple[int, int, str]:
    """Sort key: numbers by value ("2" before "10"), then other names alphabetically."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def image_name(video_id: str, frame: int) -> str:
    return f"{video_id}_{frame:05d}.jpg"


def metadata_text(rows: list[dict[str, str]]) -> str:
    """``rows`` (dicts with :data:`COLUMNS`) as the CSV text of ``metadata.csv``."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_metadata(root: Path, rows: list[dict[str, str]]) -> Path:
    path = Path(root) / METADATA
    write_atomic(path, metadata_text(rows))
    return path


def _header(fields: list[str], path: Path) -> list[str]:
    header = [h.strip() for h in fields]
    dup = next((h for i, h in enumerate(header) if h and h in header[:i]), None)
    if dup is not None:
        raise FrameDataError(f"{path}:row 1: column {dup!r} appears twice in the header")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise FrameDataError(f"{path}: missing column(s) {', '.join(missing)}; expected "
                             f"{','.join(COLUMNS)}")
    return header


def _path_problem(root: Path, rel: str, cls: str, check_files: bool) -> tuple[Path | None, str | None]:
    """(absolute path, None) for a good ``path`` field, else (None, "field 'path': problem")."""
    if not rel:
        return None, "field 'path': empty"
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        return None, f"field 'path': {rel!r} is absolute; give it relative to {root}"
    if len(parts) != 2 or parts[0] != cls:
        return None, (f"field 'path': {rel!r} is not an image directly inside its class folder "
                      f"'{cls}/'")
    if name_problem(parts[1]):
        return None, f"field 'path': file name {parts[1]!r} {name_problem(parts[1])}"
    if not parts[1].lower().endswith(IMAGE_SUFFIXES):
        return None, (f"field 'path': {rel!r} is not an image file "
                      f"({', '.join(IMAGE_SUFFIXES)})")
    p = root / parts[0] / parts[1]
    try:
        inside = p.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        return None, f"field 'path': {rel!r} resolves outside {root}"
    if check_files and not p.is_file():
        return None, f"field 'path': image {p} not found"
    return p, None


def parse_metadata(root: str | Path, check_files: bool = True
                   ) -> tuple[FrameDataset, list[str]]:
    """Read ``<root>/metadata.csv``: the dataset of its good rows, and one line per bad row.

    Problems with the file as a whole (missing, not UTF-8, no header, a missing column) raise
    :class:`FrameDataError`.
    """
    root = Path(root)
    path = root / METADATA
    if not root.is_dir():
        raise FrameDataError(f"{root}: frame dataset folder not found (run 'cprclip frames', or "
                             "set frames_dir to a folder of class folders with a metadata.csv)")
    try:
        text = _read_text(path, what="frame metadata")
        rows = _csv_rows(text, path)
        first = next(rows, None)
    except ManifestError as e:
        raise FrameDataError(str(e)) from None
    if first is None:
        raise FrameDataError(f"{path}: empty file; expected a header line {','.join(COLUMNS)}")
    header = _header(first[2], path)
    good: list[FrameRow] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    captions: dict[str, tuple[str, int]] = {}
    for i, last, fields in rows:
        where = f"{path}:row {i}"
        if last != i:
            errors.append(f"{where}: a field runs over lines {i}-{last} (a stray '\"')")
            continue
        if len(fields) > len(header) and any(v.strip() for v in fields[len(header):]):
            errors.append(f"{where}: {len(fields)} fields but the header has {len(header)} "
                          "(an unquoted ',' inside a field?)")
            continue
        row = {h: (fields[j].strip() if j < len(fields) else "") for j, h in enumerate(header)}
        missing = [c for c in REQUIRED if header.index(c) >= len(fields)]
        if missing:
            errors.append(f"{where}: {len(fields)} fields but the header has {len(header)}; "
                          f"field {missing[0]!r} is missing")
            continue
        cls = row["class"]
        if not cls:
            errors.append(f"{where}: field 'class': empty")
            continue
        if name_problem(cls):
            errors.append(f"{where}: field 'class': {cls!r} {name_problem(cls)}")
            continue
        image, problem = _path_problem(root, row["path"], cls, check_files)
        if problem:
            errors.append(f"{where}: {problem}")
            continue
        if row["path"] in seen:
            errors.append(f"{where}: field 'path': {row['path']!r} repeats row {seen[row['path']]}")
            continue
        if not row["video_id"]:
            errors.append(f"{where}: field 'video_id': empty")
            continue
        fid = row["frame_id"]
        if not fid.isdigit():
            errors.append(f"{where}: field 'frame_id': {fid!r} is not an integer >= 0")
            continue
        if row["split"] not in SPLITS:
            errors.append(f"{where}: field 'split': {row['split']!r} is not one of "
                          f"{', '.join(SPLITS)}")
            continue
        cap = row["caption"]
        if not cap:
            errors.append(f"{where}: field 'caption': empty (each class needs its text)")
            continue
        if cls in captions and captions[cls][0] != cap:
            errors.append(f"{where}: field 'caption': {cap[:60]!r} differs from row "
                          f"{captions[cls][1]}'s caption of class {cls!r}; one caption per class")
            continue
        captions.setdefault(cls, (cap, i))
        seen[row["path"]] = i
        good.append(FrameRow(image, cls, row["video_id"], int(fid), cap, row["split"],
                             row.get("participant", ""), i))
    if not good and not errors:
        errors.append(f"{path}: no rows")
    classes = tuple(sorted(captions, key=natural_key))
    ds = FrameDataset(root, tuple(good), classes, tuple(captions[c][0] for c in classes))
    return ds, errors


def load_frame_dataset(root: str | Path, check_files: bool = True) -> FrameDataset:
    """:func:`parse_metadata`, raising :class:`FrameDataError` on the first bad row."""
    ds, errors = parse_metadata(root, check_files)
    if errors:
        more = (f" (and {len(errors) - 1} more problem(s); run 'cprclip frames --check')"
                if len(errors) > 1 else "")
        raise FrameDataError(errors[0] + more)
    return ds
