"""``cprclip flow``: optical-flow videos for the manifest rows that have none.

    cprclip flow --config configs/synthetic.toml [key=value ...]

For each row whose ``flow`` column is empty (or points to a missing file) it computes flow with
:func:`extract.flow.compute_flow_video` into ``<flow_dir>/<video_id>.mp4`` (atomically; existing
files are reused, so a rerun does no work), in a process pool, and then rewrites the manifest's
``flow`` column. Videos that fail are logged and listed; exit code 1 if any failed. A full
disk stops the run with one line naming the file (exit 2); finished flow videos are kept.
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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowConfig:
    """``[flow]`` of a config TOML. Defaults are the real-scale (CPR-Coach) recipe."""

    manifest: str = "data/cpr_coach/manifest.csv"  # from [common]
    method: str = "tvl1"  # CPR-Coach's flow; farneback is the fast demo choice
    short_side: int = 256  # flow at short side 256, as CPR-Coach / mmaction2 rawframes
    bound: float = 20.0  # px/frame clipped before uint8 quantisation (denseflow's bound)
    flow_dir: str = ""  # "" -> <manifest folder>/flow
    workers: int = 2  # processes; each computes one video single-threaded
    preset: str = "ultrafast"  # x264 preset: lossless either way, only speed vs size
    allow_outside_root: bool = False  # manifest paths may not leave its folder unless set

    def validate(self) -> None:
        from extract.flow import FLOW_METHODS
        from pipeline.config import ConfigError

        if self.method not in FLOW_METHODS:
            raise ConfigError(f"[flow] key 'method': {self.method!r} is not one of "
                              f"{', '.join(FLOW_METHODS)}")
        if self.workers < 1 or self.short_side < 0 or self.bound <= 0:
            raise ConfigError("[flow] workers must be >= 1, short_side >= 0, bound > 0")


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


def run(cfg: FlowConfig) -> tuple[int, int, int, list[tuple[str, str]]]:
    """Returns (computed, reused, already set, [(video_id, reason) failed]).

    Raises :class:`FlowWriteError` when the disk fills up: the flow videos finished before are
    kept (and recorded in the manifest), the one being written is removed, a rerun goes on."""
    from pipeline.log import progress
    from pipeline.manifest import ManifestError, parse_manifest, with_flow, write_manifest

    manifest = Path(cfg.manifest)
    records, errors = parse_manifest(manifest, check_files=False,
                                     allow_outside_root=cfg.allow_outside_root)
    if errors:
        raise ManifestError(errors[0])
    flow_dir = Path(cfg.flow_dir) if cfg.flow_dir else manifest.parent / "flow"
    if flow_dir.is_dir():  # hidden *.tmp files of a killed run (their pid is gone)
        from pipeline.features import remove_stale_tmp

        remove_stale_tmp(flow_dir)
    have = [r for r in records if r.flow is not None and r.flow.exists()]
    todo = [r for r in records if not (r.flow is not None and r.flow.exists())]
    flows: dict[str, Path] = {}
    jobs = []
    for r in todo:
        dst = flow_dir / f"{r.video_id}.mp4"
        if dst.is_file() and dst.stat().st_size > 0:  # written by an earlier, interrupted run
            flows[r.video_id] = dst
        else:
            jobs.append((r.video_id, str(r.path), str(dst)))
    reused = len(flows)
    failed: list[tuple[str, str]] = []
    if jobs:
        log.info("flow: %d video(s) to compute with %s at short side %s, %d worker(s) -> %s",
                 len(jobs), cfg.method, cfg.short_side or "native", cfg.workers, flow_dir)
        t0 = time.time()
        import multiprocessing as mp

        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("fork"),
                                 initializer=_init_worker) as pool:
            futs = [pool.submit(_one, vid, src, dst, cfg.method, cfg.short_side, cfg.bound,
                                cfg.preset) for vid, src, dst in jobs]
            try:
                for fut in progress(as_completed(futs), desc="flow", total=len(futs), unit="video"):
                    vid, dst, n, err, full = fut.result()
                    if full:  # every other video would fail the same way: stop, one line
                        raise FlowWriteError(f"{dst}: cannot write ({full})")
                    if err:
                        log.error("flow: %s: %s", vid, err)
                        failed.append((vid, err))
                    else:
                        flows[vid] = Path(dst)
            except BaseException:
                for f in futs:
                    f.cancel()
                raise
            finally:
                # Record what is done even when interrupted, so nothing computed is lost.
                if flows:
                    write_manifest(manifest, with_flow(records, flows))
        log.info("flow: %d computed in %.1f s", len(jobs) - len(failed), time.time() - t0)
    elif flows:
        write_manifest(manifest, with_flow(records, flows))
    return len(jobs) - len(failed), reused, len(have), failed


def main(args: argparse.Namespace) -> int:
    from pipeline.config import load_stage_config
    from pipeline.manifest import ManifestError

    cfg = load_stage_config(FlowConfig, "flow", args.config, args.overrides)
    try:
        computed, reused, had, failed = run(cfg)
    except ManifestError as e:
        log.error("%s", e)
        return 2
    except (FlowWriteError, OSError) as e:  # OSError: e.g. the manifest cannot be rewritten
        log.error("flow: %s", e)
        return 2
    text = (f"flow: {computed} computed, {reused} reused from {cfg.flow_dir or 'flow/'}, "
            f"{had} already in the manifest, {len(failed)} failed")
    (log.warning if failed else log.info)("summary: %s", text)
    sys.stdout.write(text + "\n")
    return 1 if failed else 0


__all__ = ["FlowConfig", "FlowWriteError", "run", "main", "add_arguments"]
