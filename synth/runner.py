"""Write the synthetic dataset of a ``SynthConfig``: render and encode every video, then the
manifest.

Everything is a function of ``seed``: a take's motion comes from (seed, take_id), a video's
camera, lighting and noise from (seed, take_id, view) - never from the processing order, so
the number of workers changes nothing in the files. Videos are written as ``<id>.mp4.tmp``
then renamed, so a file is complete or absent; a rerun skips the videos already there. The
manifest is written last.

Beside each video go its rescuer's 2D keypoints (pipeline.skeleton files): the exact ones in
``skeleton_clean/<id>.npz`` and estimator-like ones (synth.keypoints, ``keypoint_noise``) in
``skeleton/<id>.npz``, which the manifest's ``skeleton`` column names. The noise has its own
random stream, (take seed, "keypoints", view), so it never changes the videos. A video that
exists without its keypoint files (a dataset made before them) only gets those.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import ConfigError, to_dict
from pipeline.manifest import VideoRecord, write_manifest
from pipeline.paths import safe_child
from pipeline.skeleton import Skeleton, write_skeleton
from synth.config import SynthConfig
from synth.narration import write_narrations
from synth.plan import Take, plan_takes, select_takes, video_id
from synth.render import (clip_keypoints, derive_seed, iter_frames, sample_motion,
                          sample_participant)

log = logging.getLogger(__name__)

__all__ = ["generate"]


# --------------------------------------------------------------------------------------------
# Encoding one video (runs in worker processes).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    path: str
    labels: tuple[int, ...]
    participant: int
    view: int
    seed: int
    dataset_seed: int
    size: tuple[int, int]
    frames: int
    fps: int
    gop: int
    crf: int
    preset: str
    clean: str  # skeleton_clean/<id>.npz
    noisy: str  # skeleton/<id>.npz
    keypoint_noise: float
    render: bool = True  # False: the video exists, write only its keypoint files


def _ffmpeg_command(job: _Job, out: str) -> list[str]:
    from pipeline.ffmpeg import ffmpeg_exe

    w, h = job.size
    # One encoder thread per small video (the pool already fills the cores); x264's own threads
    # for 4K, where one frame is a lot of work.
    threads = "1" if w * h <= 640 * 480 else "0"
    return [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(job.fps), "-i", "-",
            "-an", "-c:v", "libx264", "-preset", job.preset, "-crf", str(job.crf),
            "-g", str(job.gop), "-keyint_min", str(job.gop), "-sc_threshold", "0",
            "-pix_fmt", "yuv420p", "-threads", threads, "-movflags", "+faststart",
            "-f", "mp4", out]


def _encode(job: _Job) -> str:
    """Render and encode one video to ``job.path`` atomically (unless ``job.render`` is false),
    then write its two keypoint files; returns the path."""
    if job.render:
        keypoints: list[np.ndarray] = []
        _render_video(job, keypoints)
        clean = np.stack(keypoints)
    else:  # the same keypoints, from the same figure and camera, without drawing
        clean = clip_keypoints(job.labels, job.participant, job.view, job.seed, job.size,
                               job.frames, job.fps, job.dataset_seed)
    _write_keypoints(job, clean)
    return job.path


def _write_keypoints(job: _Job, clean: np.ndarray) -> None:
    """The clean keypoints and their noisy copy (its own random stream: the videos never see
    it), each written atomically by pipeline.skeleton."""
    from synth.keypoints import add_noise

    w, h = job.size
    write_skeleton(job.clean, Skeleton(clean, w, h, float(job.fps), "synth-clean"))
    rng = np.random.default_rng(derive_seed(job.seed, "keypoints", job.view))
    noisy = add_noise(clean, w, h, job.keypoint_noise, rng)
    write_skeleton(job.noisy, Skeleton(noisy, w, h, float(job.fps), "synth-noisy"))


def _render_video(job: _Job, keypoints: list[np.ndarray]) -> None:
    """Render and encode one video to ``job.path`` atomically; ``keypoints`` receives the
    clean keypoints of its frames (synth.render.iter_frames)."""
    final = Path(job.path)
    tmp = final.with_name(final.name + ".tmp")
    proc = subprocess.Popen(_ffmpeg_command(job, str(tmp)), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for frame in iter_frames(job.labels, job.participant, job.view, job.seed, job.size,
                                 job.frames, job.fps, job.dataset_seed, keypoints=keypoints):
            proc.stdin.write(frame.tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    rc = proc.wait()
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed (exit {rc}) writing {final}: {err.strip()[-500:]}")
    os.replace(tmp, final)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool provides the parallelism


# --------------------------------------------------------------------------------------------
# The runner.
# --------------------------------------------------------------------------------------------

# Keys that do not change the videos: a rerun may change them freely.
_NOT_CONTENT = ("workers", "max_takes", "narration_wer")  # narration/ is rewritten every run
# Keys that change only the noisy keypoints (skeleton/): a rerun rewrites those, keeps the rest.
_NOISY_KEYPOINTS_ONLY = ("keypoint_noise",)


def _check_previous(record: Path, cfg: SynthConfig) -> bool:
    """Refuse to mix videos of two different configs in one dataset folder. True when only
    the noisy keypoints must be rewritten (:data:`_NOISY_KEYPOINTS_ONLY` changed)."""
    if not record.is_file():
        return False
    try:
        old = json.loads(record.read_text(encoding="utf-8")).get("config", {})
    except (OSError, json.JSONDecodeError):
        return False
    new = to_dict(cfg)
    changed = [k for k in new if k in old and old[k] != new[k]]
    diff = sorted(k for k in changed if k not in _NOT_CONTENT + _NOISY_KEYPOINTS_ONLY)
    if diff:
        shown = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in diff)
        raise ConfigError(
            f"{record.parent} was generated with a different config ({shown}); delete that folder "
            "or choose another dataset= and manifest=")
    return any(k in _NOISY_KEYPOINTS_ONLY for k in changed)


def check_same_dataset(record: Path, cfg: SynthConfig) -> None:
    """Raise ConfigError when the folder of ``record`` (its ``synth.json``) holds videos of
    another content config (``cprclip narrate`` describes the videos that are there)."""
    _check_previous(record, cfg)


def take_measures(take: Take, cfg: SynthConfig) -> tuple[float, float]:
    """The true mean rate (per minute) and depth (cm) of a take, as a feedback manikin would log
    them: from the take's motion, which its views share (synth.render.sample_motion)."""
    motion = sample_motion(take.labels, sample_participant(take.participant, cfg.seed), take.seed,
                           cfg.frames, cfg.fps)
    return round(motion.rate_bpm, 3), round(100.0 * motion.mean_depth, 3)


def generate(cfg: SynthConfig, show_progress: bool = True) -> Path:
    """Write the videos and manifest of ``cfg``; return the manifest path.

    Existing videos are kept (a rerun only renders what is missing). Tests can call it with a
    tiny config, e.g. participants=3 held_out=1 frames=24 resolution=64x48 n_double=3
    n_triple=1 n_quad=1 workers=1.
    """
    from pipeline.log import progress
    from pipeline.provenance import code_version

    t0 = time.perf_counter()
    manifest = Path(cfg.manifest)
    root = manifest.parent
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    record = root / "synth.json"
    clean_dir, noisy_dir = root / "skeleton_clean", root / "skeleton"
    if _check_previous(record, cfg):
        # Removed before synth.json records the new strength: a run cut short after this
        # leaves files missing (rewritten next time), never files of the old strength.
        stale = sorted(noisy_dir.glob("*.npz"))
        log.info("keypoint_noise changed: rewriting the %d noisy keypoint files in %s",
                 len(stale), noisy_dir)
        for p in stale:
            p.unlink()
    record.write_text(json.dumps({"config": to_dict(cfg), "code_version": code_version()},
                                 indent=2, sort_keys=True) + "\n", encoding="utf-8")

    takes = select_takes(plan_takes(cfg), cfg.max_takes)
    # the texts of issue 20 (synth/narration.py): cheap, rewritten every run
    narrations = write_narrations(cfg, takes, root)
    rows: list[VideoRecord] = []
    jobs: list[_Job] = []
    for take in takes:
        rate, depth = take_measures(take, cfg)
        for view in range(1, cfg.views + 1):
            vid = video_id(take, view)
            path = videos / f"{vid}.mp4"
            clean = safe_child(clean_dir, vid, ".npz")
            noisy = safe_child(noisy_dir, vid, ".npz")
            rows.append(VideoRecord(vid, path.resolve(), take.take_id, view,
                                    f"p{take.participant + 1}", take.split, take.labels,
                                    rate=rate, depth=depth, skeleton=noisy.resolve(),
                                    narration=narrations[take.take_id].resolve()))
            have_video = path.is_file() and path.stat().st_size > 0
            if have_video and clean.is_file() and noisy.is_file():
                continue
            jobs.append(_Job(str(path), take.labels, take.participant, view, take.seed, cfg.seed,
                             cfg.size, cfg.frames, cfg.fps, cfg.gop, cfg.crf, cfg.preset,
                             str(clean), str(noisy), cfg.keypoint_noise, render=not have_video))
    n_render = sum(j.render for j in jobs)
    log.info("synth %s: %d takes, %d videos (%d already written, %d to render, %d more need "
             "only keypoints) at %s, %d frames", cfg.dataset, len(takes), len(rows),
             len(rows) - n_render, n_render, len(jobs) - n_render, cfg.resolution, cfg.frames)
    if jobs:
        bar = (lambda it: progress(it, desc="synth", total=len(jobs), unit="video")) \
            if show_progress else (lambda it: it)
        if cfg.workers == 1 or len(jobs) == 1:
            _init_worker()
            for _ in bar(map(_encode, jobs)):
                pass
        else:
            # spawn: workers start clean, whatever the parent has imported (torch, threads).
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(cfg.workers, len(jobs)), initializer=_init_worker) as pool:
                for _ in bar(pool.imap_unordered(_encode, jobs, chunksize=1)):
                    pass
    write_manifest(manifest, rows)
    log.info("wrote %s (%d videos) in %.1f s", manifest, len(rows), time.perf_counter() - t0)
    return manifest
