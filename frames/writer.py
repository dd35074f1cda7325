"""``cprclip frames``: sample frames of the single-class videos into a class-folder dataset.

For each single-class video of the manifest (in ``splits``), ``frames_per_video`` frames are
taken evenly spaced, with one seeded offset per video (:func:`frame_indices`), and written as
``<frames_dir>/<class>/<video_id>_<frame>.jpg``; ``metadata.csv`` lists them
(frames/layout.py). A video that cannot be read goes to ``failures.csv`` with a one-line reason
and the others go on.

Resumable: ``frames.json`` holds the recipe (frames per video, seed, captions, JPEG quality)
and is written first. Each image is written to a temporary and renamed, so an image that exists
is complete; a rerun with the same recipe skips every video whose images all exist. Images that
the new plan no longer lists (another recipe, a video removed from the manifest) are deleted.
A folder that holds a ``metadata.csv`` without ``frames.json`` is a user's dataset: refused.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frames.config import FramesConfig
from frames.layout import (METADATA, caption_for, class_folder, image_name, write_metadata)
from pipeline.atomic import write_atomic
from pipeline.log import first_line, progress
from pipeline.paths import safe_child

log = logging.getLogger(__name__)

RECIPE_FILE = "frames.json"
FAILURES = "failures.csv"


@dataclass(frozen=True)
class WriteSummary:
    root: Path
    videos: int  # single-class videos planned
    skipped: int  # already complete from an earlier run
    written: int  # videos whose images this call wrote
    failed: int
    images: int  # rows of metadata.csv
    classes: int


def frame_indices(num_frames: int, k: int, seed: int, video_id: str) -> np.ndarray:
    """``k`` evenly spaced frame indices of a video of ``num_frames`` frames: frame
    ``floor((i + u) * num_frames / k)`` for i < k, with one offset u in [0, 1) drawn from
    (seed, video_id), so a video's frames do not depend on the order videos are visited.
    All frames, once each, when the video has fewer than ``k``. (k,) int64, increasing."""
    if num_frames <= 0:
        return np.zeros(0, np.int64)
    if num_frames <= k:
        return np.arange(num_frames, dtype=np.int64)
    key = int(hashlib.sha256(video_id.encode()).hexdigest()[:15], 16)
    u = np.random.default_rng([seed, key]).random()
    return np.floor((np.arange(k) + u) * num_frames / k).astype(np.int64)


def recipe(cfg: FramesConfig) -> dict:
    """What decides the images' names and pixels: equal recipes mean a rerun may skip."""
    return {"frames_per_video": cfg.frames_per_video, "seed": cfg.seed,
            "caption_kinds": list(cfg.caption_kinds), "jpeg_quality": cfg.jpeg_quality,
            "format": "jpg"}


def _old_paths(root: Path) -> set[str]:
    """The ``path`` column of an earlier metadata.csv (empty when there is none)."""
    p = root / METADATA
    if not p.is_file():
        return set()
    try:
        return {r.get("path", "") for r in csv.DictReader(io.StringIO(p.read_text("utf-8")))}
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()


def _encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def write_frames(cfg: FramesConfig) -> WriteSummary:
    """Sample the manifest's single-class videos into ``cfg.root`` (see the module docstring)."""
    from extract.decoders import DecodeError, open_video
    from pipeline.lock import release, take_lock
    from pipeline.manifest import load_manifest, manifest_hash
    from pipeline.provenance import code_version

    root = cfg.root
    records = load_manifest(cfg.manifest)
    singles = [r for r in records if r.is_single and r.split in cfg.splits]
    if not singles:
        raise ValueError(f"{cfg.manifest}: no single-class videos in the splits "
                         f"{', '.join(cfg.splits)}")
    if (root / METADATA).is_file() and not (root / RECIPE_FILE).is_file():
        raise ValueError(f"{root}: holds a frame dataset that 'cprclip frames' did not write (a "
                         f"metadata.csv without {RECIPE_FILE}); set frames_dir to another folder")
    root.mkdir(parents=True, exist_ok=True)
    lock = take_lock(root / ".frames.lock", f"{root}: another 'cprclip frames' (pid {{pid}}) is "
                                            "writing here; wait for it to finish")
    try:
        want = recipe(cfg)
        try:
            old = json.loads((root / RECIPE_FILE).read_text()).get("recipe")
        except (OSError, ValueError, AttributeError):
            old = None
        same = old == want
        if old is not None and not same:
            log.warning("%s: written with another recipe (%s); rewriting every image", root, old)
        stale = _old_paths(root)
        write_atomic(root / RECIPE_FILE, json.dumps({"recipe": want, "finished": False}, indent=2))

        rows: list[dict[str, str]] = []
        failures: list[tuple[str, str, str]] = []
        skipped = written = 0
        captions = {k: caption_for(k, cfg.caption_kinds) for k in {r.labels[0] for r in singles}}
        for rec in progress(singles, desc="frames", unit="video"):
            k = rec.labels[0]
            folder = class_folder(k)
            try:
                with open_video(rec.path, cfg.decoder) as reader:
                    idx = frame_indices(reader.num_frames, cfg.frames_per_video, cfg.seed,
                                        rec.video_id)
                    if len(idx) == 0:
                        raise DecodeError(f"{rec.path}: no frames")
                    files = [safe_child(root / folder, image_name(rec.video_id, int(i)))
                             for i in idx]
                    if same and all(f.is_file() for f in files):
                        skipped += 1
                    else:
                        images = reader.get(idx)
                        (root / folder).mkdir(exist_ok=True)
                        for f, img in zip(files, images):
                            write_atomic(f, _encode_jpeg(img, cfg.jpeg_quality))
                        written += 1
            except (DecodeError, ValueError, RuntimeError) as e:  # one bad video, not the run
                reason = first_line(e, 200)
                log.warning("%s (%s): skipped: %s", rec.video_id, rec.path, reason)
                failures.append((rec.video_id, str(rec.path), reason))
                continue
            for f, i in zip(files, idx):
                rows.append({"path": f"{folder}/{f.name}", "class": folder,
                             "video_id": rec.video_id, "frame_id": str(int(i)),
                             "caption": captions[k], "split": rec.split,
                             "participant": rec.participant})
        write_metadata(root, rows)
        buf = io.StringIO(newline="")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["video_id", "path", "reason"])
        w.writerows(failures)
        write_atomic(root / FAILURES, buf.getvalue())
        for rel in stale - {r["path"] for r in rows}:  # images the new plan no longer lists
            parts = rel.split("/")
            if len(parts) == 2 and parts[1].endswith(".jpg"):
                try:
                    safe_child(root / parts[0], parts[1]).unlink(missing_ok=True)
                except (ValueError, OSError) as e:
                    log.warning("%s: cannot remove the stale image %s (%s)", root, rel, e)
        classes = sorted({r["class"] for r in rows})
        write_atomic(root / RECIPE_FILE, json.dumps({
            "recipe": want, "finished": True, "manifest": str(cfg.manifest),
            "manifest_sha256": manifest_hash(cfg.manifest), "splits": list(cfg.splits),
            "videos": len(singles), "failed": len(failures), "images": len(rows),
            "classes": classes, "code_version": code_version()}, indent=2))
    finally:
        release(lock)
    if failures:
        log.warning("%d video(s) could not be read; see %s", len(failures), root / FAILURES)
    return WriteSummary(root, len(singles), skipped, written, len(failures), len(rows),
                        len(classes))
