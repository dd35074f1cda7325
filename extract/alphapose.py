"""AlphaPose's JSON results -> skeleton files (:mod:`pipeline.skeleton`).

CPR-Coach ships its 2D skeletons as AlphaPose output. AlphaPose's default result format
(``--format default``, ``alphapose-results.json``) is a JSON list of detections, one per person
per frame::

    [{"image_id": "0.jpg", "category_id": 1, "keypoints": [x, y, score, x, y, score, ...],
      "score": 2.87, "box": [x, y, w, h], "idx": 3}, ...]

- ``keypoints``: K points of (x, y, score) in pixels, K one of :data:`LAYOUTS`: COCO-17,
  Halpe-26 (COCO-17 first, then head, neck, hip and 6 foot points), COCO-WholeBody-133 (body
  17, feet 6, face 68, left hand 21, right hand 21) or Halpe-136 (body 26, face 68, left hand 21,
  right hand 21). Every layout starts with COCO-17 in COCO's order, which is ours; the hand
  points come from the 21-point hands (:data:`pipeline.skeleton.HAND_21_INDEX`) when the layout
  has them, and are "not found" (score 0) otherwise.
- ``image_id``: the frame's image name; its frame number is the last run of digits in the
  name, minus ``first_frame`` (AlphaPose numbers the frames of a video from 0; frames extracted
  as ``img_00001.jpg`` start at 1). When no name has digits, frames are numbered in the order
  they first appear.
- ``score``: the detection's score; ``idx``: the track id (with ``--pose_track``/``--pose_flow``).

One person per frame is kept: the best-scoring detection (``person = "best"``), or one track
(``person = "track"``: ``track``, or the track with the highest total score). Frames without a
kept detection are all zeros (no person found), as the skeleton format says. Frame size, rate and
count come from the video when one is given (``video``), else from ``width``, ``height``,
``fps`` and ``frames``.

Problems are one line naming the file and, for a bad detection, its index in the list.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from pipeline.config import check_fields, check_range, key_error
from pipeline.paths import UnsafeNameError, safe_child
from pipeline.skeleton import (COCO17, HAND_21_INDEX, HAND_POINTS, NUM_KEYPOINTS, Skeleton,
                               write_skeleton)

log = logging.getLogger(__name__)

__all__ = ["AlphaPoseError", "ImportAlphaPoseConfig", "LAYOUTS", "import_alphapose",
           "keypoint_map", "read_alphapose", "to_skeleton", "Detection"]

# Keypoints per person -> (layout name, first index of the left hand's 21 points, of the right's).
LAYOUTS: dict[int, tuple[str, int | None, int | None]] = {
    17: ("COCO-17", None, None),
    26: ("Halpe-26", None, None),
    133: ("COCO-WholeBody-133", 91, 112),
    136: ("Halpe-136", 94, 115),
}
SOURCE = "alphapose"


class AlphaPoseError(ValueError):
    """An AlphaPose result that cannot be imported; one line naming the file (and detection)."""


def keypoint_map(k: int) -> np.ndarray:
    """(23,) index into a K-point AlphaPose layout for each of our :data:`KEYPOINTS`, -1 where
    the layout has no such point (the hand points of COCO-17 and Halpe-26)."""
    if k not in LAYOUTS:
        raise ValueError(f"{k} keypoints is no AlphaPose layout; known: "
                         + ", ".join(f"{n} ({name})" for n, (name, _, _) in LAYOUTS.items()))
    _, left, right = LAYOUTS[k]
    out = list(range(len(COCO17)))
    for start in (left, right):
        out += [-1] * len(HAND_POINTS) if start is None else \
            [start + HAND_21_INDEX[p] for p in HAND_POINTS]
    assert len(out) == NUM_KEYPOINTS
    return np.array(out)


@dataclass(frozen=True)
class Detection:
    frame: int
    score: float
    track: int | None
    keypoints: np.ndarray  # (K, 3) as AlphaPose wrote them


def _number(v: Any) -> float | None:
    """A JSON number as float (bool is not one), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _track(v: Any) -> int | None:
    """AlphaPose's ``idx``: an int, a float, or a list holding one number."""
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    x = _number(v)
    return int(x) if x is not None and math.isfinite(x) and x == int(x) else None


def read_alphapose(path: str | Path, first_frame: int = 0) -> list[Detection]:
    """The detections of one AlphaPose result file, checked; frame numbers start at 0."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AlphaPoseError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AlphaPoseError(f"{path}: cannot read it as UTF-8 text ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AlphaPoseError(f"{path}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})") \
            from None
    if not isinstance(data, list):
        raise AlphaPoseError(f"{path}: expected a JSON list of detections (AlphaPose's "
                             f"--format default), got a {type(data).__name__}")
    names: list[str] = []
    k_file = None
    raw: list[tuple[str, float, int | None, np.ndarray]] = []
    for i, d in enumerate(data):
        where = f"{path}: detection {i}"
        if not isinstance(d, dict):
            raise AlphaPoseError(f"{where}: expected an object, got {type(d).__name__}")
        image = d.get("image_id")
        if isinstance(image, bool) or not isinstance(image, (str, int)) or image == "":
            raise AlphaPoseError(f"{where}: 'image_id' must be an image name or a frame number, "
                                 f"got {image!r}")
        kp = d.get("keypoints")
        if not isinstance(kp, list) or not all(_number(v) is not None for v in kp):
            raise AlphaPoseError(f"{where}: 'keypoints' must be a list of numbers")
        if len(kp) % 3 or len(kp) // 3 not in LAYOUTS:
            raise AlphaPoseError(f"{where}: {len(kp)} keypoint values are not 3 x one of "
                                 f"{', '.join(map(str, LAYOUTS))} keypoints")
        k = len(kp) // 3
        if k_file is None:
            k_file = k
        elif k != k_file:
            raise AlphaPoseError(f"{where}: {k} keypoints, but detection 0 has {k_file}")
        arr = np.array(kp, np.float64).reshape(k, 3)
        if not np.isfinite(arr).all():
            raise AlphaPoseError(f"{where}: 'keypoints' holds NaN or infinity")
        score = _number(d.get("score"))
        if d.get("score") is not None and (score is None or not math.isfinite(score)):
            raise AlphaPoseError(f"{where}: 'score' must be a number, got {d.get('score')!r}")
        if score is None:  # not written by every AlphaPose version: the mean keypoint score
            score = float(arr[:, 2].mean())
        track = _track(d["idx"]) if "idx" in d else None
        if "idx" in d and track is None:
            raise AlphaPoseError(f"{where}: 'idx' (the track id) must be a whole number, got "
                                 f"{d['idx']!r}")
        names.append(str(image))
        raw.append((str(image), score, track, arr))
    digits = [re.findall(r"\d+", Path(n).stem) for n in names]
    if names and not any(digits):  # no numbers at all: frames in order of appearance
        order: dict[str, int] = {}
        frames = [order.setdefault(n, len(order)) for n in names]
    else:
        frames = []
        for i, (n, g) in enumerate(zip(names, digits)):
            if not g:
                raise AlphaPoseError(f"{path}: detection {i}: image_id {n!r} has no frame number "
                                     "(other image_ids do)")
            f = int(g[-1]) - first_frame
            if f < 0:
                raise AlphaPoseError(f"{path}: detection {i}: image_id {n!r} is before the "
                                     f"first frame (first_frame={first_frame})")
            frames.append(f)
    return [Detection(f, s, t, a) for f, (_, s, t, a) in zip(frames, raw)]


def to_skeleton(detections: list[Detection], frames: int, person: str = "best",
                track: int = -1, where: str = "") -> tuple[np.ndarray, dict[str, int]]:
    """Keypoints (frames, 23, 3) of one person, and counts for the log: ``kept`` frames with a
    person, ``dropped`` detections past the last frame, ``track`` the kept track (-1: none)."""
    out = np.zeros((frames, NUM_KEYPOINTS, 3), np.float32)
    dets = [d for d in detections if d.frame < frames]
    info = {"kept": 0, "dropped": len(detections) - len(dets), "track": -1}
    if not dets:
        return out, info
    if person == "track":
        if any(d.track is None for d in dets):
            raise AlphaPoseError(f"{where}: person=track needs each detection's 'idx' (AlphaPose "
                                 "run with --pose_track or --pose_flow); use person=best")
        if track < 0:
            totals: dict[int, float] = {}
            for d in dets:
                totals[d.track] = totals.get(d.track, 0.0) + d.score  # type: ignore[index]
            track = max(sorted(totals), key=lambda t: totals[t])
        dets = [d for d in dets if d.track == track]
        if not dets:
            raise AlphaPoseError(f"{where}: no detection has track idx {track}")
        info["track"] = track
    elif person != "best":
        raise ValueError(f"person {person!r}: valid are best, track")
    best: dict[int, Detection] = {}
    for d in dets:  # the highest score per frame; the first one on a tie
        if d.frame not in best or d.score > best[d.frame].score:
            best[d.frame] = d
    m = keypoint_map(dets[0].keypoints.shape[0])
    have = m >= 0
    for f, d in best.items():
        kp = out[f]
        kp[have] = d.keypoints[m[have]]
        kp[:, 2] = np.clip(kp[:, 2], 0.0, 1.0)  # some models' confidences pass 1
        kp[kp[:, 2] == 0] = 0.0  # not found: x, y mean nothing (the skeleton format)
    info["kept"] = len(best)
    return out, info


# --------------------------------------------------------------------------------------------
# ``cprclip import-alphapose``


@dataclass(frozen=True)
class ImportAlphaPoseConfig:
    """``[import_alphapose]``: AlphaPose result files -> skeleton files."""

    SECTION: ClassVar[str] = "import_alphapose"

    json: str = ""  # one AlphaPose result file, or a folder of <video_id>.json; required
    out: str = ""  # the .npz for one file; a folder (<video_id>.npz) for a folder; required
    # the video (for a folder of JSON: a folder of <video_id>.<ext>): frame size, rate, count
    video: str = ""
    width: int = 0  # without a video: the frame size in pixels (then required)
    height: int = 0
    fps: float = 25.0  # without a video: CPR-Coach's frame rate
    frames: int = 0  # 0 = the video's frame count, else the last detected frame + 1
    first_frame: int = 0  # the number in the first frame's image_id (0 for AlphaPose on a video)
    person: Literal["best", "track"] = "best"  # the top detection per frame, or one track
    track: int = -1  # person=track: the idx to keep; -1 = the track with the highest total score

    def __post_init__(self) -> None:
        check_fields(self)
        for k in ("json", "out"):
            if not str(getattr(self, k)).strip():
                raise key_error(self, k, "required (e.g. json=alphapose-results.json "
                                         "out=data/cpr_coach/skeleton/P01_T003_V1.npz "
                                         "video=P01_T003_V1.mp4)")
        for k in ("width", "height", "frames", "first_frame"):
            check_range(self, k, ge=0)
        check_range(self, "fps", gt=0)
        check_range(self, "track", ge=-1)
        if not self.video and not (self.width and self.height):
            raise key_error(self, "video", "give the video (video=FILE or folder) or the frame "
                                           "size (width=W height=H)")


def _video_for(cfg: ImportAlphaPoseConfig, json_path: Path, folder: bool) -> Path | None:
    if not cfg.video:
        return None
    v = Path(cfg.video)
    if not folder:
        return v
    hits = sorted(p for p in v.glob(f"{json_path.stem}.*") if p.suffix.lower() != ".json")
    if not hits:
        raise AlphaPoseError(f"{json_path}: no video {json_path.stem}.* in {v}")
    return hits[0]


def _import_one(cfg: ImportAlphaPoseConfig, src: Path, dst: Path, video: Path | None) -> Path:
    width, height, fps, frames = cfg.width, cfg.height, cfg.fps, cfg.frames
    if video is not None:
        from extract.decoders import DecodeError, probe

        try:
            info = probe(video)
        except DecodeError as e:
            raise AlphaPoseError(f"{src}: its video {e}") from None
        width, height, fps = info.width, info.height, info.fps
        frames = frames or info.frames
    dets = read_alphapose(src, cfg.first_frame)
    if not frames:
        frames = max((d.frame for d in dets), default=-1) + 1
    if frames <= 0:
        raise AlphaPoseError(f"{src}: no detections and no frame count (give video= or frames=)")
    kp, info_ = to_skeleton(dets, frames, cfg.person, cfg.track, str(src))
    if info_["dropped"]:
        log.warning("%s: %d detection(s) after the last frame (%d) left out", src,
                    info_["dropped"], frames - 1)
    write_skeleton(dst, Skeleton(kp, width, height, fps, SOURCE))
    log.info("%s -> %s: %d of %d frames with a person%s", src, dst, info_["kept"], frames,
             f" (track {info_['track']})" if info_["track"] >= 0 else "")
    return dst


def import_alphapose(cfg: ImportAlphaPoseConfig) -> tuple[list[Path], list[str]]:
    """Write the skeleton file(s) of ``cfg``: (written paths, one error line per failed file).
    A folder is imported file by file; one bad file does not stop the others."""
    src = Path(cfg.json)
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() == ".json" and p.is_file())
        if not files:
            raise AlphaPoseError(f"{src}: no .json files in this folder")
        out_dir = Path(cfg.out)
        if out_dir.suffix.lower() == ".npz" or out_dir.is_file():
            raise AlphaPoseError(f"out={cfg.out}: json= is a folder, so out= must be a folder")
        jobs = []
        errors: list[str] = []
        for f in files:
            try:
                jobs.append((f, safe_child(out_dir, f.stem, ".npz")))
            except UnsafeNameError as e:
                errors.append(f"{f}: {e}")
        folder = True
    elif src.is_file():
        dst = Path(cfg.out)
        if dst.is_dir():
            dst = dst / f"{src.stem}.npz"
        elif dst.suffix.lower() != ".npz":
            raise AlphaPoseError(f"out={cfg.out}: give a .npz file or an existing folder")
        jobs, errors, folder = [(src, dst)], [], False
    else:
        raise AlphaPoseError(f"{src}: no such file or folder")
    written = []
    for f, dst in jobs:
        try:
            written.append(_import_one(cfg, f, dst, _video_for(cfg, f, folder)))
        except (AlphaPoseError, OSError) as e:
            errors.append(str(e).splitlines()[0] if str(e) else f"{f}: {type(e).__name__}")
    return written, errors

