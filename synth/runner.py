"""Write the synthetic dataset of a ``SynthConfig``: render and encode every video, then the
manifest.

Everything is a function of ``seed``: a take's motion comes from (seed, take_id), a video's
camera, lighting and noise from (seed, take_id, view) - never from the processing order, so
the number of workers changes nothing in the files. Videos are written as ``<id>.mp4.tmp``
then renamed, so a file is complete or absent; a rerun skips the videos already there. The
manifest is written last.
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

from pipeline.config import ConfigError, to_dict
from pipeline.manifest import VideoRecord, write_manifest
from synth.config import SynthConfig
from synth.plan import plan_takes, select_takes, video_id
from synth.render import iter_frames

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
    """Render and encode one video to ``job.path`` atomically; returns the path."""
    final = Path(job.path)
    tmp = final.with_name(final.name + ".tmp")
    proc = subprocess.Popen(_ffmpeg_command(job, str(tmp)), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for frame in iter_frames(job.labels, job.participant, job.view, job.seed, job.size,
                                 job.frames, job.fps, job.dataset_seed):
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
    return str(final)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool provides the parallelism


# --------------------------------------------------------------------------------------------
# The runner.
# --------------------------------------------------------------------------------------------

# Keys that do not change the videos: a rerun may change them freely.
_NOT_CONTENT = ("workers", "max_takes")


def _check_previous(record: Path, cfg: SynthConfig) -> None:
    """Refuse to mix videos of two different configs in one dataset folder."""
    if not record.is_file():
        return
    try:
        old = json.loads(record.read_text(encoding="utf-8")).get("config", {})
    except (OSError, json.JSONDecodeError):
        return
    new = to_dict(cfg)
    diff = sorted(k for k in new if k not in _NOT_CONTENT and k in old and old[k] != new[k])
    if diff:
        shown = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in diff)
        raise ConfigError(
            f"{record.parent} was generated with a different config ({shown}); delete that folder "
            "or choose another dataset= and manifest=")


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
    _check_previous(record, cfg)
    record.write_text(json.dumps({"config": to_dict(cfg), "code_version": code_version()},
                                 indent=2, sort_keys=True) + "\n", encoding="utf-8")

    takes = select_takes(plan_takes(cfg), cfg.max_takes)
    rows: list[VideoRecord] = []
    jobs: list[_Job] = []
    for take in takes:
        for view in range(1, cfg.views + 1):
            vid = video_id(take, view)
            path = videos / f"{vid}.mp4"
            rows.append(VideoRecord(vid, path.resolve(), take.take_id, view,
                                    f"p{take.participant + 1}", take.split, take.labels))
            if path.is_file() and path.stat().st_size > 0:
                continue
            jobs.append(_Job(str(path), take.labels, take.participant, view, take.seed, cfg.seed,
                             cfg.size, cfg.frames, cfg.fps, cfg.gop, cfg.crf, cfg.preset))
    log.info("synth %s: %d takes, %d videos (%d already written, %d to render) at %s, %d frames",
             cfg.dataset, len(takes), len(rows), len(rows) - len(jobs), len(jobs),
             cfg.resolution, cfg.frames)
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
