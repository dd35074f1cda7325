"""``cprclip synth``: generate the synthetic multi-view CPR dataset (videos + manifest).

A take is one recording of one participant doing one label set; it is seen by ``views``
cameras (front, left, right, high oblique), one H.264 file per view. The plan:

- train: participants p1..p(P-held_out), every single class (0..13) once;
- val:   the held-out participants, every single class once;
- test:  ``n_double`` + ``n_triple`` + ``n_quad`` composite label sets drawn from the taxonomy
         by ``seed``, each once, alternating between the held-out participants.

Everything is a function of ``seed``: a take's motion comes from (seed, take_id), a video's
camera, lighting and noise from (seed, take_id, view) - never from the processing order.
Videos are written as ``<id>.mp4.tmp`` then renamed, so a file is complete or absent; a rerun
skips the videos already there. The manifest is written last.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import ConfigError, load_stage_config, to_dict
from pipeline.manifest import VideoRecord, write_manifest
from pipeline.synth_render import VIEW_NAMES, derive_seed, iter_frames, render_clip
from pipeline.taxonomy import NUM_CLASSES, composite_label_sets

log = logging.getLogger(__name__)

__all__ = ["SynthConfig", "Take", "plan_takes", "generate", "render_clip", "add_arguments", "main"]


@dataclass(frozen=True)
class SynthConfig:
    dataset: str = "synthetic"  # name of the folder data/<dataset>/ (must hold the manifest)
    manifest: str = "data/synthetic/manifest.csv"  # videos go to videos/ next to it
    seed: int = 0  # the whole dataset (people, motions, cameras, noise) follows from it
    resolution: str = "160x120"  # WxH, even numbers; small so the demo runs on 2 CPU cores
    fps: int = 25  # CPR-Coach's frame rate
    frames: int = 80  # 3.2 s: 3-6 compressions, enough to see rate and depth
    participants: int = 6  # CPR-Coach has 12; 6 keeps the demo small
    held_out: int = 2  # the last ones: unseen people for val (singles) and test (composites)
    n_double: int = 59  # composite counts of CPR-Coach: 59 double, 10 triple, 5 quadruple
    n_triple: int = 10
    n_quad: int = 5
    views: int = 4  # front, left, right, high oblique (the first `views` of these)
    gop: int = 25  # one key frame per second: cheap seeks for segment sampling
    crf: int = 18  # near-lossless for the small demo frames, so noise and motion survive
    preset: str = "veryfast"  # x264 speed/size: 2x faster than "fast", files ~6% bigger
    workers: int = 2  # processes rendering and encoding in parallel
    max_takes: int = 0  # 0 = all; >0 keeps only that many takes (quick 4K checks)

    def validate(self) -> None:
        w, h = self.size
        if w % 2 or h % 2:
            raise ConfigError(f"[synth] resolution {self.resolution!r}: H.264 (yuv420p) needs even "
                              "width and height")
        if not 1 <= self.held_out < self.participants:
            raise ConfigError(f"[synth] held_out={self.held_out} must be >= 1 and less than "
                              f"participants={self.participants}")
        if not 1 <= self.views <= len(VIEW_NAMES):
            raise ConfigError(f"[synth] views={self.views} must be 1..{len(VIEW_NAMES)}")
        for key, size in (("n_double", 2), ("n_triple", 3), ("n_quad", 4)):
            n, avail = getattr(self, key), len(composite_label_sets((size,)))
            if not 0 <= n <= avail:
                raise ConfigError(f"[synth] {key}={n} must be 0..{avail} "
                                  f"(valid sets of {size} errors)")
        for key in ("fps", "frames", "gop", "workers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"[synth] {key}={getattr(self, key)} must be >= 1")
        if self.frames < 2:
            raise ConfigError(f"[synth] frames={self.frames} must be >= 2")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"[synth] crf={self.crf} must be 0..51")
        if self.max_takes < 0:
            raise ConfigError(f"[synth] max_takes={self.max_takes} must be >= 0 (0 = all)")
        if Path(self.manifest).parent.name != self.dataset:
            raise ConfigError(
                f"[synth] manifest {self.manifest!r} is not in a folder named after dataset "
                f"{self.dataset!r}; pass manifest=data/{self.dataset}/manifest.csv as well, so a "
                "new dataset never overwrites another one's manifest")

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) parsed from ``resolution``."""
        try:
            w, h = (int(v) for v in self.resolution.lower().split("x"))
        except ValueError:
            raise ConfigError(f"[synth] resolution {self.resolution!r} is not WxH, e.g. 160x120 or "
                              "3840x2160") from None
        if w < 16 or h < 16:
            raise ConfigError(f"[synth] resolution {self.resolution!r} is too small (min 16x16)")
        return w, h


@dataclass(frozen=True)
class Take:
    """One recording: a participant (0-based index) doing one label set."""

    take_id: str
    participant: int
    split: str
    labels: tuple[int, ...]
    seed: int  # the take's seed; motion comes from it, the views add their own


def _take_id(participant: int, labels: tuple[int, ...]) -> str:
    return f"p{participant + 1}_c" + "-".join(f"{k:02d}" for k in labels)


def sample_composites(cfg: SynthConfig) -> list[tuple[int, ...]]:
    """The composite label sets of the test split, drawn from ``seed`` (sorted within a size)."""
    rng = np.random.default_rng(derive_seed(cfg.seed, "composites"))
    out: list[tuple[int, ...]] = []
    for size, n in ((2, cfg.n_double), (3, cfg.n_triple), (4, cfg.n_quad)):
        sets = composite_label_sets((size,))
        out.extend(sets[i] for i in sorted(rng.choice(len(sets), n, replace=False)))
    return out


def plan_takes(cfg: SynthConfig) -> list[Take]:
    """All takes of the dataset (before ``max_takes``), in train, val, test order."""
    n_train = cfg.participants - cfg.held_out
    held = list(range(n_train, cfg.participants))
    plan: list[tuple[int, str, tuple[int, ...]]] = []
    plan += [(p, "train", (k,)) for p in range(n_train) for k in range(NUM_CLASSES)]
    plan += [(p, "val", (k,)) for p in held for k in range(NUM_CLASSES)]
    plan += [(held[i % len(held)], "test", labels)
             for i, labels in enumerate(sample_composites(cfg))]
    takes = []
    for p, split, labels in plan:
        tid = _take_id(p, labels)
        takes.append(Take(tid, p, split, labels, derive_seed(cfg.seed, "take", tid)))
    return takes


def select_takes(takes: list[Take], max_takes: int) -> list[Take]:
    """The first ``max_takes`` takes taken round-robin over the splits (all when 0)."""
    if max_takes <= 0 or max_takes >= len(takes):
        return takes
    by_split: dict[str, list[Take]] = {}
    for t in takes:
        by_split.setdefault(t.split, []).append(t)
    queues = list(by_split.values())
    out: list[Take] = []
    i = 0
    while len(out) < max_takes:
        q = queues[i % len(queues)]
        if q:
            out.append(q.pop(0))
        i += 1
    return out


def video_id(take: Take, view: int) -> str:
    return f"{take.take_id}_v{view}"


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

    cfg.validate()
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    cfg = load_stage_config(SynthConfig, "synth", args.config, args.overrides)
    path = generate(cfg)
    sys.stdout.write(f"{path}\n")
    return 0

