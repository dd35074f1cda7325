"""``cprclip flow``: optical-flow videos for the manifest rows that have none.

    cprclip flow --config configs/synthetic.toml [key=value ...]

For each row whose ``flow`` column is empty (or points to a missing file) it computes flow with
:func:`extract.flow.compute_flow_video` into ``<flow_dir>/<video_id>.mp4`` (atomically), in a
process pool, and records it in ``<flow_dir>/index.csv`` (video_id, flow file, recipe, source
size and mtime). The manifest is never rewritten: the manifest loader fills a row's ``flow`` from
the index (:func:`pipeline.manifest.resolve_flow`). A rerun does no work for videos whose
indexed flow is current (same source file, same recipe); a file left by a killed run is reused
when its recipe matches. Videos that fail are logged and listed; exit code 1 if any failed. A
full disk stops the run with one line naming the file (exit 2); finished flow videos are kept.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

log = logging.getLogger(__name__)


# x264's presets: lossless output either way, they trade speed for file size
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                     "slower", "veryslow", "placebo"]
# the names of extract.flow.FLOW_METHODS (tests/pipeline/test_config.py keeps them in step)
FlowMethod = Literal["farneback", "tvl1", "dis"]


@dataclass(frozen=True)
class FlowConfig:
    """``[flow]`` of a config TOML. Defaults are the real-scale (CPR-Coach) recipe."""

    SECTION: ClassVar[str] = "flow"

    manifest: str = "data/cpr_coach/manifest.csv"  # from [common]
    method: FlowMethod = "tvl1"  # CPR-Coach's flow; farneback is the fast demo choice
    short_side: int = 256  # flow at short side 256, as CPR-Coach / mmaction2 rawframes; 0 = as stored
    bound: float = 20.0  # px/frame clipped before uint8 quantisation (denseflow's bound)
    flow_dir: str = ""  # "" -> <manifest folder>/flow
    workers: int = 2  # processes; each computes one video single-threaded
    preset: X264Preset = "ultrafast"  # x264 preset: lossless either way, only speed vs size
    allow_outside_root: bool = False  # manifest paths may not leave its folder unless set

    def __post_init__(self) -> None:
        from pipeline.config import check_fields, check_range

        check_fields(self)
        check_range(self, "workers", ge=1)
        check_range(self, "short_side", ge=0)
        check_range(self, "bound", gt=0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)


class FlowWriteError(RuntimeError):
    """The disk is full (or over quota): the run stops; the message names the file."""


# errnos that no other video would escape either: stop the run instead of failing every video
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _one(video_id: str, src: str, dst: str, method: str, short_side: int, bound: float,
         preset: str) -> tuple[str, str, int, str, str]:
    """(video_id, dst, flow frames, error or "", the OS's reason when the disk is full)."""
    from extract.flow import compute_flow_video

    try:
        n = compute_flow_video(src, dst, method, short_side or None, bound, preset)
        return video_id, dst, n, "", ""
    except Exception as e:  # noqa: BLE001 - reported per video, the run goes on
        full = ""
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            full = e.strerror or os.strerror(e.errno)
        return video_id, dst, 0, str(e).splitlines()[0] if str(e) else type(e).__name__, full


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the run that forked it dies (even by SIGKILL), so a
    killed ``cprclip flow`` leaves no orphan processes behind."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _init_worker() -> None:
    import cv2

    _die_with_parent()

    cv2.setNumThreads(1)


def _plan(records, flow_dir: Path, index: dict, want: str):
    """Split the rows without a usable manifest flow into (kept index entries, jobs, failures).

    Reused: an index entry made from the same video with the same recipe whose file exists; or
    a complete flow video of an earlier, killed run (no index entry yet) with the same recipe.
    """
    from extract.flow import read_recipe
    from pipeline.manifest import flow_entry
    from pipeline.paths import UnsafeNameError, safe_child

    keep, jobs, failed = {}, [], []
    for r in records:
        try:
            # The one containment check for an output path made from a video_id.
            dst = safe_child(flow_dir, r.video_id, ".mp4")
        except UnsafeNameError as e:
            log.error("flow: %s: %s", r.video_id, e)
            failed.append((r.video_id, str(e)))
            continue
        entry = index.get(r.video_id)
        if entry is not None and entry.flow == dst.resolve() and dst.is_file():
            if entry.is_current(r.path) and entry.recipe == want:
                keep[r.video_id] = entry
                continue
            log.info("flow: %s: %s changed since its flow was computed; computing it again",
                     r.video_id, "the video" if not entry.is_current(r.path) else "the recipe")
        elif (entry is None and dst.is_file() and dst.stat().st_size > 0
              and read_recipe(dst) == want and r.path.is_file()):
            keep[r.video_id] = flow_entry(r.video_id, dst, want, r.path)  # a killed run's work
            continue
        jobs.append((r.video_id, str(r.path), str(dst)))
    return keep, jobs, failed


def run(cfg: FlowConfig) -> tuple[int, int, int, list[tuple[str, str]]]:
    """Returns (computed, reused, already set, [(video_id, reason) failed]).

    Raises :class:`FlowWriteError` when the disk fills up: the flow videos finished before are
    kept (and recorded in the index when it still fits; a rerun reuses them either way), the
    one being written is removed, a rerun goes on."""
    from extract.flow import recipe
    from pipeline.log import progress
    from pipeline.manifest import (ManifestError, default_flow_dir, flow_entry, parse_manifest,
                                   read_flow_index)

    manifest = Path(cfg.manifest)
    # The manifest alone: which rows name their own flow. The index is read below.
    records, errors = parse_manifest(manifest, check_files=False,
                                     allow_outside_root=cfg.allow_outside_root,
                                     use_flow_index=False)
    if errors:
        raise ManifestError(errors[0])
    flow_dir = Path(cfg.flow_dir) if cfg.flow_dir else default_flow_dir(manifest)
    if flow_dir.is_dir():  # hidden *.tmp files of a killed run (their pid is gone)
        from pipeline.features import remove_stale_tmp

        remove_stale_tmp(flow_dir)
    if cfg.flow_dir and flow_dir.resolve() != default_flow_dir(manifest).resolve():
        log.warning("flow: flow_dir %s is not the default %s; extract and finetune find these "
                    "flow videos only when given the same flow_dir", flow_dir,
                    default_flow_dir(manifest))
    index = read_flow_index(flow_dir)
    have = [r for r in records if r.flow is not None and r.flow.exists()]
    todo = [r for r in records if not (r.flow is not None and r.flow.exists())]
    want = recipe(cfg.method, cfg.bound, cfg.short_side or None)
    keep, jobs, failed = _plan(todo, flow_dir, index, want)
    reused = len(keep)
    entries = dict(index)  # entries of other manifests sharing this flow_dir stay
    entries.update(keep)
    # Each video's size and mtime as it is before its flow is computed: a video changed while
    # its flow is computed is then seen as changed by the next run.
    before = {}
    for vid, src, dst in jobs:
        try:
            before[vid] = flow_entry(vid, Path(dst), want, Path(src))
        except OSError:  # a missing video: compute_flow_video reports it as this video's failure
            pass
    new: dict = {}
    if jobs:
        log.info("flow: %d video(s) to compute with %s at short side %s, %d worker(s) -> %s",
                 len(jobs), cfg.method, cfg.short_side or "native", cfg.workers, flow_dir)
        t0 = time.time()
        import multiprocessing as mp

        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("fork"),
                                 initializer=_init_worker) as pool:
            futs = [pool.submit(_one, vid, src, dst, cfg.method, cfg.short_side, cfg.bound,
                                cfg.preset) for vid, src, dst in jobs]
            ok = False
            try:
                for fut in progress(as_completed(futs), desc="flow", total=len(futs), unit="video"):
                    vid, dst, n, err, full = fut.result()
                    if full:  # every other video would fail the same way: stop, one line
                        raise FlowWriteError(f"{dst}: cannot write ({full})")
                    if err:
                        log.error("flow: %s: %s", vid, err)
                        failed.append((vid, err))
                    elif vid in before:
                        new[vid] = before[vid]
                ok = True
            except BaseException:
                for f in futs:
                    f.cancel()
                raise
            finally:
                # Record what is done even when interrupted, so nothing computed is lost.
                _write_index(flow_dir, {**entries, **new}, entries != index or bool(new), ok)
        log.info("flow: %d computed in %.1f s", len(new), time.time() - t0)
    else:
        _write_index(flow_dir, entries, entries != index, True)
    return len(new), reused, len(have), failed


def _write_index(flow_dir: Path, entries: dict, changed: bool, raise_errors: bool) -> None:
    """Write the index when it changed. While another error is on its way out (a full disk),
    a failed index write is only logged: the flow videos stay, and a rerun reuses them."""
    from pipeline.manifest import write_flow_index

    if not changed:
        return
    try:
        write_flow_index(flow_dir, entries.values())
    except OSError as e:
        if raise_errors:
            raise
        # The reason is already the run's one error line; say only what it means here.
        log.warning("flow: %s not updated; a rerun reuses the finished flow videos", e.filename)


def main(args: argparse.Namespace) -> int:
    from pipeline.config import load_stage_config
    from pipeline.manifest import ManifestError

    cfg = load_stage_config(FlowConfig, "flow", args.config, args.overrides)
    try:
        computed, reused, had, failed = run(cfg)
    except ManifestError as e:
        log.error("%s", e)
        return 2
    except FlowWriteError as e:
        log.error("flow: %s", e)
        return 2
    except OSError as e:  # e.g. the index cannot be written
        log.error("flow: %s: cannot write (%s)", e.filename or "?", e.strerror or e)
        return 2
    text = (f"flow: {computed} computed, {reused} reused from {cfg.flow_dir or 'flow/'}, "
            f"{had} already in the manifest, {len(failed)} failed")
    (log.warning if failed else log.info)("summary: %s", text)
    sys.stdout.write(text + "\n")
    return 1 if failed else 0


__all__ = ["FlowConfig", "FlowWriteError", "run", "main", "add_arguments"]
