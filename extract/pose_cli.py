"""``cprclip pose``: skeleton files from a real pose estimator, for videos that come without.

    cprclip pose --config configs/synthetic.toml [key=value ...]

For each manifest row whose ``skeleton`` column is empty (or names a missing file; with
``videos = "all"``, every row) it runs MediaPipe BlazePose (and Hands) in the isolated
``.venv-pose`` (:mod:`extract.pose`) and writes ``<pose_dir>/<video_id>.npz`` (the skeleton
file of :mod:`pipeline.skeleton`, atomically), then records it in ``<pose_dir>/index.csv``
(video_id, file, recipe, source video, its size and mtime). The manifest is never rewritten:
the manifest loader fills a row's ``skeleton`` from the index
(:func:`pipeline.manifest.resolve_pose`).

A rerun does no work for videos whose indexed skeleton is current (same video, same recipe); a
file left by a killed run is reused when its recipe matches. A video that fails is logged,
listed in ``<pose_dir>/failures.csv`` (video_id, path, reason: this run's failures only) and the
run goes on; exit code 1 if any failed. A missing ``.venv-pose`` or model files that are not
mediapipe 0.10.21's stop the run with one line (exit 2).
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import sys
import queue
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

log = logging.getLogger(__name__)

FAILURES = "failures.csv"
FAILURE_COLUMNS = ("video_id", "path", "reason")
# Rewrite the index at least this often during a run, so an interrupted run loses little.
INDEX_EVERY_S = 60.0


@dataclass(frozen=True)
class PoseConfig:
    """``[pose]`` of a config TOML."""

    SECTION: ClassVar[str] = "pose"

    manifest: str = "data/cpr_coach/manifest.csv"  # from [common]
    pose_dir: str = ""  # "" -> <manifest folder>/pose
    venv: str = ".venv-pose"  # the isolated venv of `make pose-deps` (relative: to the repo)
    # "missing": rows whose manifest has no skeleton file; "all": every row (to compare the
    # estimator with the skeletons a dataset ships)
    videos: Literal["missing", "all"] = "missing"
    # MediaPipe Hands for index_mcp, pinky_mcp and middle_tip; false: BlazePose's own hand
    # landmarks only (faster; no middle_tip)
    hands: bool = True
    # frames are shrunk to this long side before the models (which see 256 px crops anyway);
    # 1280 keeps a 4K hand at ~30 px. 0 = as decoded
    max_side: int = 1280
    min_detection: float = 0.5  # MediaPipe's defaults: a person/hand is reported from 0.5
    min_tracking: float = 0.5
    workers: int = 1  # estimator processes, one video at a time each
    timeout_s: float = 600.0  # per video: a worker silent for longer is stopped, the video fails
    allow_outside_root: bool = False  # manifest paths may not leave its folder unless set

    def __post_init__(self) -> None:
        from pipeline.config import check_fields, check_range

        check_fields(self)
        check_range(self, "workers", ge=1)
        check_range(self, "max_side", ge=0)
        check_range(self, "min_detection", ge=0, le=1)
        check_range(self, "min_tracking", ge=0, le=1)
        check_range(self, "timeout_s", gt=0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)


@dataclass
class PoseResult:
    estimated: int = 0
    reused: int = 0
    had: int = 0  # rows whose manifest names a skeleton file
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (video_id, path, reason)
    no_person: list[str] = field(default_factory=list)  # estimated, no person in any frame
    frames: int = 0
    seconds: float = 0.0  # worker time on the estimated videos


def _plan(records, pose_dir: Path, index: dict, want_recipe: str, want_source: str):
    """(kept index entries, jobs [(record, dst)], failures) for the rows to estimate."""
    from pipeline.manifest import pose_entry
    from pipeline.paths import UnsafeNameError, safe_child
    from pipeline.skeleton import SkeletonError, read_skeleton

    keep, jobs, failed = {}, [], []
    for r in records:
        try:
            dst = safe_child(pose_dir, r.video_id, ".npz")
        except UnsafeNameError as e:
            failed.append((r.video_id, str(r.path), str(e)))
            continue
        entry = index.get(r.video_id)
        if entry is not None and entry.skeleton == dst.resolve() and dst.is_file():
            if entry.is_current(r.path) and entry.recipe == want_recipe:
                keep[r.video_id] = entry
                continue
            log.info("pose: %s: %s changed since it was estimated; estimating it again",
                     r.video_id, "the video" if not entry.is_current(r.path) else "the recipe")
        elif entry is None and dst.is_file() and r.path.is_file():
            try:  # a killed run's finished file: reused when made the same way
                if read_skeleton(dst).source == want_source:
                    keep[r.video_id] = pose_entry(r.video_id, dst, want_recipe, r.path)
                    continue
            except SkeletonError:
                pass
        jobs.append((r, dst))
    return keep, jobs, failed


def _write_failures(pose_dir: Path, rows: list[tuple[str, str, str]]) -> None:
    """This run's failures, or no file when there are none (an older list would mislead)."""
    from pipeline.atomic import write_atomic

    path = pose_dir / FAILURES
    if not rows:
        path.unlink(missing_ok=True)
        return
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FAILURE_COLUMNS)
    w.writerows(sorted(rows))
    pose_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())


def run(cfg: PoseConfig) -> PoseResult:
    """Estimate the skeletons of the rows that need them; see the module docstring."""
    from extract.pose import PoseEstimator, PoseVideoError, detected_fraction, recipe, source_string
    from pipeline.features import remove_stale_tmp
    from pipeline.log import first_line, progress
    from pipeline.manifest import (ManifestError, default_pose_dir, parse_manifest, pose_entry,
                                   read_pose_index, write_pose_index)
    from pipeline.skeleton import SkeletonError, write_skeleton

    manifest = Path(cfg.manifest)
    # The manifest alone: which rows name their own skeleton. The index is read below.
    records, errors = parse_manifest(manifest, check_files=False,
                                     allow_outside_root=cfg.allow_outside_root,
                                     use_flow_index=False, use_pose_index=False)
    if errors:
        raise ManifestError(errors[0])
    pose_dir = Path(cfg.pose_dir) if cfg.pose_dir else default_pose_dir(manifest)
    if pose_dir.is_dir():
        remove_stale_tmp(pose_dir)  # a killed run's raw outputs (their pid is gone)
    if cfg.pose_dir and pose_dir.resolve() != default_pose_dir(manifest).resolve():
        log.warning("pose: pose_dir %s is not the default %s; other stages find these skeleton "
                    "files only when given the same pose_dir", pose_dir, default_pose_dir(manifest))
    res = PoseResult()
    own = lambda r: r.skeleton is not None and r.skeleton.exists()  # noqa: E731
    todo = records if cfg.videos == "all" else [r for r in records if not own(r)]
    res.had = len(records) - len(todo)
    want = recipe(cfg.hands, cfg.max_side, cfg.min_detection, cfg.min_tracking)
    index = read_pose_index(pose_dir)
    keep, jobs, res.failed = _plan(todo, pose_dir, index, want, source_string(want, cfg.hands))
    res.reused = len(keep)
    entries = {**index, **keep}  # entries of other manifests sharing this pose_dir stay
    changed = entries != index
    if not jobs:
        if changed:
            write_pose_index(pose_dir, entries.values())
        _write_failures(pose_dir, res.failed)
        return res

    log.info("pose: %d video(s) to estimate (%s), %d worker(s) -> %s", len(jobs), want,
             cfg.workers, pose_dir)
    pose_dir.mkdir(parents=True, exist_ok=True)
    # One estimator (one worker process) per thread, lent out per video. The first starts (and
    # checks the model files) here, so a missing venv or a wrong mediapipe is one error before
    # any video, not one failure per video; the others start at their first video.
    made = [PoseEstimator(cfg.venv, cfg.hands, cfg.max_side, cfg.min_detection,
                          cfg.min_tracking, cfg.timeout_s)
            for _ in range(min(cfg.workers, len(jobs)))]
    made[0].start()
    idle: queue.SimpleQueue = queue.SimpleQueue()
    for est in made:
        idle.put(est)

    def one(r, dst: Path):
        if not r.path.is_file():
            raise PoseVideoError(f"video file {r.path} not found")
        est = idle.get()
        try:
            before = pose_entry(r.video_id, dst, want, r.path)  # size/mtime before it is read
            tmp = dst.with_name(f".{r.video_id}.raw.{os.getpid()}.tmp")
            sk, ans = est.estimate(r.path, tmp)
            write_skeleton(dst, sk)
            return before, sk, ans
        finally:
            idle.put(est)

    t0 = last_write = time.time()
    try:
        with ThreadPoolExecutor(cfg.workers) as pool:
            futs = {pool.submit(one, r, dst): r for r, dst in jobs}
            try:
                for fut in progress(as_completed(futs), desc="pose", total=len(futs),
                                    unit="video"):
                    r = futs[fut]
                    try:
                        entry, sk, ans = fut.result()
                    except (PoseVideoError, SkeletonError, OSError) as e:
                        reason = first_line(e)
                        log.error("pose: %s: %s", r.video_id, reason)
                        res.failed.append((r.video_id, str(r.path), reason))
                        continue
                    entries[r.video_id] = entry
                    changed = True
                    res.estimated += 1
                    res.frames += int(ans.get("frames", 0))
                    res.seconds += float(ans.get("seconds", 0.0))
                    det = detected_fraction(sk)
                    if det == 0:
                        res.no_person.append(r.video_id)
                        log.warning("pose: %s: no person found in any of its %d frames",
                                    r.video_id, sk.frames)
                    else:
                        log.debug("pose: %s: a person in %.0f%% of %d frames", r.video_id,
                                  100 * det, sk.frames)
                    if time.time() - last_write > INDEX_EVERY_S:
                        write_pose_index(pose_dir, entries.values())
                        last_write = time.time()
            except BaseException:
                for f in futs:
                    f.cancel()
                for est in made:  # the videos in progress end now, not when they are done
                    est.kill()
                raise
    finally:
        for est in made:
            est.close()
        # Record what is done even when interrupted, so nothing estimated is lost.
        if changed:
            write_pose_index(pose_dir, entries.values())
        _write_failures(pose_dir, res.failed)
    log.info("pose: %d estimated in %.1f s", res.estimated, time.time() - t0)
    return res


def main(args: argparse.Namespace) -> int:
    from extract.pose import PoseError
    from pipeline.config import load_stage_config
    from pipeline.manifest import ManifestError

    cfg = load_stage_config(PoseConfig, "pose", args.config, args.overrides)
    try:
        res = run(cfg)
    except (ManifestError, PoseError) as e:
        log.error("pose: %s", e)
        return 2
    except OSError as e:  # e.g. the index cannot be written
        log.error("pose: %s: cannot write (%s)", e.filename or "?", e.strerror or e)
        return 2
    fps = f", {res.frames / res.seconds:.1f} frames/s" if res.seconds > 0 else ""
    where = cfg.pose_dir or "pose/"
    text = (f"pose: {res.estimated} estimated{fps}, {res.reused} reused from {where}, "
            f"{res.had} with a skeleton in the manifest, {len(res.failed)} failed"
            + (f" (see {where.rstrip('/')}/{FAILURES})" if res.failed else "")
            + (f"; no person found in {len(res.no_person)}" if res.no_person else ""))
    (log.warning if res.failed else log.info)("summary: %s", text)
    sys.stdout.write(text + "\n")
    return 1 if res.failed else 0


__all__ = ["PoseConfig", "PoseResult", "run", "main", "add_arguments"]
