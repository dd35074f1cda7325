"""``cprclip serve``: the assistant as a web page and an HTTP API (FastAPI on uvicorn).

A trainer opens the page, drops in the 1-4 views of one take and reads the assistant's verdict
(:func:`evaluate.decide.decide`, the rule ``cprclip eval`` measures): the errors it sees with
their calibrated probability and what to correct, "correct", "not sure" with the closest
candidates, or "unsuitable" (the video does not look like chest compressions: no error list);
then the frames it looked at and a chart of every class. The model is loaded once when the
server starts; each request only decodes, extracts and scores. Every message meant for the
page is written for a trainer (:func:`explain`, :func:`plain_notes`, :func:`plain_problem`).

API (the OpenAPI schema is at ``/openapi.json``; there is no ``/docs`` page: FastAPI's loads
Swagger UI from a CDN, which the page's Content-Security-Policy and an offline machine forbid):

- ``GET /health``: the server is up; which run it uses and the upload limits;
- ``POST /predict``: multipart form with ``files`` (1-4 videos of one take) and ``views`` (the
  view number 1-4 of each file, in order; default 1, 2, ...). Waits and returns the result;
- ``POST /jobs``: the same form; returns ``202 {"id": ...}`` at once. ``GET /jobs/{id}`` then
  tells the stage the work is in, and holds the result (or the error) when it is finished.
  The page uses this pair to show progress.

Bad input is answered with a 4xx status and ``{"detail": "<one plain sentence>"}``: no file
(400), more than ``max_files`` (400), an empty file (400), a bad view number (400), a file over
``max_upload_mb`` (413), a video longer than ``max_duration_s``, with more than ``max_frames``
frames or more than ``max_megapixel_frames`` (width x height x frames / 1e6) (413, naming the
limit; read from the file's header before anything is decoded), a file that is not a readable
video (415). A failure inside the model work is a 500 with the reason, a take still running
after ``job_timeout_s`` a 504, and the server goes on serving.

Safety: an upload's name is only ever *shown*, never used as a path: each request writes its
files as ``view<N>.video`` into its own new temporary folder (so two requests never share a
file), and that folder is removed when the request's work ends, whatever happened. Request
bodies are cut off once they pass the total upload limit, before anything is parsed. The
folders live under ``<tmp>/cprclip-serve-<pid>-*``; a server that was killed cannot remove its
own, so each server removes at start-up those whose process is gone (:func:`clean_stale_uploads`):
uploaded videos of people do not linger.

Work runs in a thread pool of ``max_concurrent_takes`` threads, so the event loop keeps answering status
polls and health checks while a take is being analysed; takes beyond that wait in a queue of
at most ``max_queue`` (more -> 503).

The model work goes through a small adapter, :class:`Analyser`; :class:`AssistantAnalyser`
is one :class:`assist.assistant.Assistant` (the run and its backbones loaded once, as for
``cprclip predict``), whose stage callback tells the page which step a take is in.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from pipeline.config import check_fields, check_range
from pipeline.log import first_line
from pipeline.taxonomy import CLASSES

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MB = 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """``[serve]`` section of a config TOML."""

    SECTION: ClassVar[str] = "serve"
    RENAMED: ClassVar[dict[str, str]] = {"workers": "max_concurrent_takes"}

    runs_dir: str = "runs"  # from [common]: where run names are looked up
    # run folder: a name under runs_dir or a path; "" = the assistant's default choice
    # (runs/cpr_clip_plus when present, else the run with the best val mAP)
    run: str = ""
    host: str = "127.0.0.1"  # loopback only: the page is for the trainer's own machine
    port: int = 8000
    # per file: a 20 s CPR-Coach view (4K H.264) is 50-150 MB; more is rather a wrong file
    max_upload_mb: float = 200.0
    max_files: int = 4  # the 4 camera views of one take
    # takes analysed at once (threads sharing the loaded model): one take already keeps 2 CPU
    # cores busy. Was `workers`, which names processes in the other stages.
    max_concurrent_takes: int = 1
    max_queue: int = 8  # takes waiting beyond this get "busy, try again" (503)
    keep_results: int = 64  # finished jobs kept for GET /jobs/{id}; the oldest go first
    thumb_height: int = 96  # px of the frame thumbnails on the page
    # What one view may cost, read from its header before anything is decoded: flow is
    # computed on every frame, so a small file with very many frames can tie the server up
    # (842 KB of 64x48 x 60,000 frames took 174 CPU-s). A CPR-Coach view is ~20 s of 25 fps
    # 4096x2160 (500 frames, ~4,400 megapixel-frames); these allow three times that.
    max_duration_s: float = 60.0
    max_frames: int = 1800  # 60 s at 30 fps
    max_megapixel_frames: float = 16000.0  # width x height x frames / 1e6: 60 s of 4K at 30 fps
    # A take still running after this is answered 504 and stopped at its next frame (decoding
    # and flow check the clock between frames). 20 s of 4K per view costs ~1-2 min on 2 cores.
    job_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        check_fields(self)
        check_range(self, "max_files", ge=1, le=4)  # the views of one take
        check_range(self, "max_upload_mb", gt=0)
        check_range(self, "port", ge=0, le=65535)
        for key in ("max_concurrent_takes", "max_queue", "keep_results", "thumb_height",
                    "max_frames"):
            check_range(self, key, ge=1)
        for key in ("max_duration_s", "max_megapixel_frames", "job_timeout_s"):
            check_range(self, key, gt=0)


class InputProblem(Exception):
    """Input the model cannot use (a non-video file, too few frames); shown to the user.

    ``status`` is the HTTP status that goes with it (415: not a video; 400: other).
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------
# The adapter between the server and the model


Progress = Callable[[str], None]


class Analyser(Protocol):
    """What the server needs from the model. Loaded once; methods are called from worker threads.

    ``analyse`` gets the V uploaded videos (V = 1..4, temporary paths) and their view numbers,
    calls ``progress(stage_key)`` as it enters each stage of :meth:`stages`, and returns a
    JSON-able dict shaped as :meth:`assist.assistant.Prediction.to_dict`: at least ``errors``
    (list of {id, name, score, advice, probability, mark}, most certain first),
    ``looks_correct`` (bool), ``scores`` ({class name: score}) and ``frames`` ({view: [JPEG
    data URL, ...]}: the sampled frames of each view); and as the assistant gives them,
    ``verdict``, ``reason``, ``probabilities``, ``marks``, ``candidates`` and ``input_check``.
    A result without ``verdict`` gets the one its errors imply (:func:`finish_result`).
    """

    def describe(self) -> dict[str, Any]:
        """Run name, model, ``score_kind`` ("probability" when calibrated, else "score" for
        BCE or "similarity" for prompts) and warnings: shown by /health and on the page."""
        ...

    def stages(self) -> list[tuple[str, str]]:
        """(key, label in plain words) of each stage, in order."""
        ...

    def check_video(self, path: Path) -> None:
        """Raise InputProblem unless ``path`` is a video the model can read."""
        ...

    def analyse(self, videos: list[Path], views: list[int], progress: Progress) -> dict[str, Any]:
        ...


def jpeg_data_urls(frames: np.ndarray, height: int) -> list[str]:
    """(T, H, W, 3) uint8 RGB -> T JPEG data URLs, each scaled to ``height`` px high."""
    import cv2

    out = []
    for f in frames:
        h, w = f.shape[:2]
        size = (max(1, round(w * height / h)), height)
        small = cv2.resize(np.ascontiguousarray(f), size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            out.append("data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii"))
    return out


# Plain-words description of each class for the page (what the trainer sees), by class id.
PLAIN: tuple[str, ...] = (
    "The compressions look right.",
    "The hands lie on top of each other without the fingers interlocked.",
    "The hands are clenched into fists.",
    "Only one hand is pressing.",
    "The elbows bend while pressing.",
    "The arms lean to one side instead of pushing straight down.",
    "The body jumps up and down with each press.",
    "The rescuer squats instead of kneeling.",
    "The rescuer stands instead of kneeling.",
    "The hands are not on the middle of the chest.",
    "The presses are too shallow.",
    "The presses are too slow.",
    "The presses are too deep.",
    "The hands move to a different place on the chest between presses.",
)


# What each kind of engineer's warning (assist.assistant.Assistant.warnings) means for a trainer,
# tried in order: (words that all occur in the warning, lower case) -> the note.
_NOT_TUNED = ("The level from which a mistake is reported has not been tuned for this model yet, "
              "so a standard level is used and the assistant will not confirm that compressions "
              "are correct.")
_NO_INPUT_CHECK = ("This model cannot tell whether a video shows chest compressions at all: "
                   "check yourself that each video shows the person and the manikin.")
_NOT_CALIBRATED = ("This model's percentages have not been tuned into chances yet, so the "
                   "assistant will not confirm that compressions are correct.")
_DEMO = ("This is a demonstration model: it learned from computer-made example videos with an "
         "untrained picture reader, so its findings show how the assistant works, not a "
         "judgement of real CPR.")
_NOTES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("random", "initiali"), (_DEMO,)),
    (("uncalibrated",), (_NOT_CALIBRATED,)),
    (("fallback", "no check for unsuitable"), (_NOT_TUNED, _NO_INPUT_CHECK)),
    (("fixed rule", "no check for unsuitable"), (_NOT_TUNED, _NO_INPUT_CHECK)),
    (("no check for unsuitable",), (_NO_INPUT_CHECK,)),
    (("threshold",), (_NOT_TUNED,)),
)


def plain_notes(warnings: list[str]) -> list[str]:
    """The assistant's warnings (written for engineers) as notes a trainer can read; a warning
    of no known kind is passed on as it is (it is still better said than hidden)."""
    out: list[str] = []
    for w in warnings:
        low = w.lower()
        notes = next((n for words, n in _NOTES if all(x in low for x in words)), (w,))
        out.extend(n for n in notes if n not in out)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def explain(result: dict[str, Any]) -> str:
    """The line under the page's heading: the verdict in a trainer's words.

    The reasons of :func:`evaluate.decide.decide` speak of "marks" and calibration; this says
    the same without them, from the result's own fields where it can."""
    verdict = result.get("verdict")
    probs = result.get("probabilities")
    n_views = len(result.get("views") or []) or 1
    if verdict == "unsuitable":
        what = "this video does" if n_views == 1 else "these videos do"
        return (f"The assistant only judges videos of chest compressions like the ones it learned "
                f"from, and {what} not look like them, so it lists no mistakes. Check that you "
                "chose the right files, and that each camera shows the person and the manikin "
                "the whole time.")
    if verdict == "correct":
        sure = "" if not probs or CLASSES[0] not in probs else (
            f", and it is {_pct(probs[CLASSES[0]])} sure the compressions are correct")
        return f"The assistant found no mistake{sure}."
    if verdict == "not_sure":
        cands = [c["name"] for c in result.get("candidates") or []]
        if not probs:
            text = ("This model has not been tuned to say how sure it is, so it cannot confirm "
                    "that the compressions are correct.")
        else:
            reason = str(result.get("reason") or "")
            m = re.search(r"only (\d+)% sure .*?needs (\d+)%", reason)
            if m and "came close" not in reason:
                text = (f"No mistake is clear enough to report, but the assistant is only "
                        f"{m.group(1)}% sure the compressions are correct; it needs "
                        f"{m.group(2)}% to say so.")
            else:
                text = "No mistake is clear enough to report, but some came close."
        if cands:
            text += f" Watch for the closest ones below: {_and(cands)}."
        if n_views < 4:
            text += " Adding the other camera views can help."
        return text
    n = len(result.get("errors") or [])
    return "Most certain first." if n > 1 else ""


def plain_problem(reason: str, videos: list[Path], views: list[int]) -> str:
    """A video the run's recipe cannot use (:class:`assist.assistant.UnusableVideo`), said for a
    trainer: "too few flow frames (4 < 7)" -> the clip is too short, record at least N s."""
    m = re.search(r"too few (flow )?frames \((\d+) < (?:min_frames )?(\d+)\)", reason)
    where = re.search(r"view(\d)\.", reason)
    view = int(where.group(1)) if where else views[0]
    if not m:
        return (f"The video of camera {view} cannot be used ({reason.split(': ', 1)[-1]}). "
                "Try another recording of the same session.")
    flow, need = bool(m.group(1)), int(m.group(3))
    frames = need + 1 if flow else need  # F frames give F - 1 flow frames
    seconds = ""
    try:
        from extract.decoders import probe

        fps = probe(videos[views.index(view)]).fps
        if fps > 0:
            s = frames / fps
            seconds = f"{s:.0f} seconds" if s >= 2 else f"{max(s, 0.1):.1f} seconds"
    except Exception:  # noqa: BLE001 - the frame count alone still says what to do
        pass
    need_text = seconds or f"{frames} frames"
    judge = "judge the motion" if flow else "be checked"
    return (f"The video of camera {view} is too short to {judge}: record at least "
            f"{need_text} of compressions.")


def finish_result(result: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """What the page needs besides the assistant's answer: the upload ``files``, ``notes`` in
    plain words, a ``description`` of each error and candidate, the ``verdict`` an older
    analyser left out, and ``explanation`` (:func:`explain`)."""
    result["files"] = names
    if not result.get("verdict"):
        result["verdict"] = ("errors" if result.get("errors") else
                             "correct" if result.get("looks_correct") else "not_sure")
    notes = plain_notes(result.get("warnings", []))
    check_note = (result.get("input_check") or {}).get("note")
    result["notes"] = ([check_note] if check_note else []) + notes
    for e in [*result.get("errors", []), *(result.get("candidates") or [])]:
        if isinstance(e.get("id"), int) and 0 <= e["id"] < len(PLAIN):
            e.setdefault("description", PLAIN[e["id"]])
    result["explanation"] = explain(result)
    return result


# Plain-words label of each stage of :attr:`assist.assistant.Assistant.stages`, for the page.
STAGE_LABELS = {
    "check": "Opening the videos",
    "flow": "Measuring the movement between frames",
    "features": "Looking at the sampled frames",
    "score": "Comparing with the known errors",
}


class AssistantAnalyser:
    """The real model: one :class:`assist.assistant.Assistant`, loaded once, behind the
    :class:`Analyser` interface. Its errors become what the server answers: an unreadable file
    415, a video the run's recipe cannot use 422 (said for a trainer by :func:`plain_problem`),
    anything else a 500 with the reason."""

    def __init__(self, predict_cfg, thumb_height: int = 96):
        from assist.assistant import Assistant

        self.assistant = Assistant.load(config=predict_cfg)
        self.thumb_height = thumb_height

    def describe(self) -> dict[str, Any]:
        a = self.assistant
        backbones = sorted({r.backbone for r in a.recipes.values()})
        # calibrated: the page shows "% likely"; otherwise the raw score, named as such
        kind = ("probability" if a.op.calibrated else
                "score" if a.head == "bce" else "similarity")
        return {"run": a.run.name, "model": a.run.model_name, "head": a.head,
                "score_kind": kind, "calibrated": bool(a.op.calibrated),
                "input_check": a.ood is not None,
                "threshold_source": a.threshold_source, "backbone": ", ".join(backbones),
                "modalities": list(a.recipes), "warnings": list(a.warnings)}

    def stages(self) -> list[tuple[str, str]]:
        return [(k, STAGE_LABELS[k]) for k in self.assistant.stages]

    def check_video(self, path: Path) -> None:
        from assist.assistant import PredictError

        try:
            self.assistant.check_video(path)
        except PredictError as e:
            raise InputProblem(str(e), status=415) from None

    def analyse(self, videos: list[Path], views: list[int], progress: Progress) -> dict[str, Any]:
        from assist.assistant import PredictError, UnreadableVideo, UnusableVideo

        try:
            # flow goes next to the uploads (view<N>.flow.mp4), in the job's own folder
            pred = self.assistant.analyse(videos, views, on_stage=progress,
                                          scratch=videos[0].parent, keep_frames=True)
        except UnreadableVideo as e:
            where = re.search(r"view(\d)\.", str(e))
            cam = f"camera {where.group(1)}" if where else "a camera"
            raise InputProblem(f"The video of {cam} cannot be read as a video: choose a video "
                               "file such as .mp4 or .avi.", status=415) from None
        except UnusableVideo as e:
            raise InputProblem(plain_problem(e.reason, videos, views), status=422) from None
        except PredictError as e:
            raise RuntimeError(e.reason) from e
        out = pred.to_dict()
        out["videos"] = [f"view {w}" for w in views]  # the temporary paths mean nothing here
        out["frames"] = {str(w): jpeg_data_urls(pred.frames[w], self.thumb_height)
                         for w in views}
        out["per_view_scores"] = {str(w): [float(s) for s in pred.per_view_scores[i]]
                                  for i, w in enumerate(views)}
        return out


# --------------------------------------------------------------------------------------------
# Jobs: one per take, run in the thread pool


@dataclass
class Job:
    id: str
    views: list[int]
    names: list[str]
    stages: list[tuple[str, str]]
    workdir: Path
    created: float = field(default_factory=time.time)
    status: str = "queued"  # queued -> running -> done | failed
    stage: str = "queued"
    result: dict[str, Any] | None = None
    error: str | None = None
    http_status: int | None = None
    finished: float | None = None
    future: Future | None = None  # the worker thread's work
    # set once the job's outcome is known: by the worker, or by the time limit while the
    # worker may still be inside a decoder call that cannot be interrupted
    outcome: Future = field(default_factory=Future)

    def public(self) -> dict[str, Any]:
        keys = [k for k, _ in self.stages]
        cur = keys.index(self.stage) if self.stage in keys else -1
        stages = []
        for i, (k, label) in enumerate(self.stages):
            if self.status == "done" or i < cur:
                state = "done"
            elif i == cur:
                state = "failed" if self.status == "failed" else "active"
            else:
                state = "waiting"
            stages.append({"key": k, "label": label, "state": state})
        end = self.finished or time.time()
        return {"id": self.id, "status": self.status, "stage": self.stage, "stages": stages,
                "views": self.views, "files": self.names, "error": self.error,
                "http_status": self.http_status, "elapsed_s": round(end - self.created, 2),
                "result": self.result}


class JobTimeout(Exception):
    """A job ran past ``job_timeout_s`` (raised at its next stage or frame)."""


class JobStore:
    """Runs jobs in a thread pool and keeps the last ``keep`` finished ones for status polls.

    ``timeout_s`` bounds each job's running time: at the deadline the job is answered 504 at
    once (a timer), and its thread stops at its next stage or decoded frame
    (:func:`extract.decoders.time_limit`); whatever it computes after that is discarded.
    """

    def __init__(self, analyser: Analyser, workers: int, max_queue: int, keep: int,
                 timeout_s: float = 600.0):
        self.analyser = analyser
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cprclip-serve")
        self.max_queue = max_queue
        self.keep = keep
        self.timeout_s = timeout_s
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()

    def pending(self) -> int:
        with self.lock:
            return sum(j.status in ("queued", "running") for j in self.jobs.values())

    def submit(self, job: Job, videos: list[Path]) -> Job:
        with self.lock:
            busy = sum(j.status in ("queued", "running") for j in self.jobs.values())
            if busy >= self.max_queue:
                raise Busy(f"The assistant is busy checking {busy} other session"
                           f"{'s' if busy != 1 else ''}; try again in a minute.")
            self.jobs[job.id] = job
            self._evict()
        job.future = self.pool.submit(self._work, job, videos)
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def _evict(self) -> None:
        done = [k for k, j in self.jobs.items() if j.status in ("done", "failed")]
        for k in done[: max(0, len(done) - self.keep)]:
            del self.jobs[k]

    def _finish(self, job: Job, status: str, http_status: int, result: dict | None = None,
                error: str | None = None) -> bool:
        """Record the job's outcome once; False when it already has one (it timed out)."""
        with self.lock:
            if job.outcome.done():
                return False
            job.result, job.error = result, error
            job.status, job.http_status = status, http_status
            job.finished = time.time()
            job.outcome.set_result(None)
            return True

    def _timeout_message(self) -> str:
        return (f"The check took longer than the {self.timeout_s:g} s the server allows per "
                "session (job_timeout_s) and was stopped: try shorter videos, or fewer cameras.")

    def _expire(self, job: Job) -> None:
        if self._finish(job, "failed", 504, error=self._timeout_message()):
            log.warning("job %s: stopped after job_timeout_s = %g s", job.id, self.timeout_s)

    def _work(self, job: Job, videos: list[Path]) -> None:
        from extract.decoders import time_limit

        deadline = time.monotonic() + self.timeout_s

        def progress(stage: str) -> None:
            if time.monotonic() > deadline:
                raise JobTimeout(f"stopped before stage {stage}")
            job.stage = stage

        job.status = "running"
        timer = threading.Timer(self.timeout_s, self._expire, (job,))
        timer.daemon = True
        timer.start()
        outcome: tuple[str, int, dict | None, str | None] | None = None
        try:
            with time_limit(self.timeout_s, "job_timeout_s"):
                result = self.analyser.analyse(videos, job.views, progress)
            finish_result(result, job.names)  # plain words for the page
            outcome = ("done", 200, result, None)
        except Exception as e:  # noqa: BLE001 - one failed take must not stop the server
            if time.monotonic() > deadline:  # whatever broke, the clock stopped it
                outcome = ("failed", 504, None, self._timeout_message())
            elif isinstance(e, InputProblem):
                outcome = ("failed", e.status, None, _scrub(str(e), job))
                log.warning("job %s: %s", job.id, outcome[3])
            else:
                log.exception("job %s failed", job.id)
                outcome = ("failed", 500, None,
                           "The check stopped because of a problem inside the assistant, not in "
                           "your videos. Try again; if it happens again, show this to whoever "
                           "runs the server: " + _scrub(first_line(e), job))
        finally:
            timer.cancel()
            # the uploads go before the answer does: a client told "done" finds nothing left
            shutil.rmtree(job.workdir, ignore_errors=True)
            if outcome is None:  # an exception that is not an Exception (the thread ends)
                outcome = ("failed", 500, None, "The analysis was interrupted.")
            status, code, result, error = outcome
            if self._finish(job, status, code, result=result, error=error) and code == 504:
                log.warning("job %s: stopped after job_timeout_s = %g s", job.id, self.timeout_s)
            with self.lock:
                self._evict()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class Busy(Exception):
    pass


def _scrub(message: str, job: Job) -> str:
    """Replace the temporary paths in ``message`` by what the user uploaded ("view 2 (a.mp4)")."""
    for i, w in enumerate(job.views):
        name = f"view {w} ({job.names[i]})"
        # longest first, so view1.flow.mp4 is replaced before view1.video's folder
        for p in sorted(job.workdir.glob(f"view{w}.*"), key=lambda p: -len(str(p))):
            message = message.replace(str(p), name)
        message = message.replace(str(job.workdir / f"view{w}.video"), name)
    return message.replace(str(job.workdir), "the upload")


def display_name(name: str | None) -> str:
    """An upload's name as shown to the user: printable, no folders, at most 80 characters."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", str(name or "")).replace("\\", "/").split("/")[-1]
    return (name[:77] + "...") if len(name) > 80 else (name or "unnamed file")


# --------------------------------------------------------------------------------------------
# What a view may cost, from its header


def check_limits(path: Path, cfg: ServeConfig, name: str) -> None:
    """Raise InputProblem (413, naming the limit and its config key) when the video at ``path``
    is longer, has more frames or more pixels x frames than ``cfg`` allows; 415 when it has no
    readable header. Only the header is read, plus a demux of the packets (no decoding) to count
    frames where the header does not say or may understate it, stopping past the limit."""
    from extract.decoders import DecodeError, count_frames, probe

    try:
        info = probe(path)
        frames = max(info.frames, count_frames(path, cfg.max_frames))
    except DecodeError as e:
        raise InputProblem(str(e), status=415) from None
    duration = info.duration_s or (frames / info.fps if info.fps > 0 else 0.0)
    megapixel_frames = info.width * info.height * frames / 1e6
    if duration > cfg.max_duration_s:
        raise InputProblem(f"The file {name} is {duration:.0f} s long; the limit is "
                           f"{cfg.max_duration_s:g} s per video (max_duration_s). Cut it to the "
                           "compressions, or record a shorter clip.", 413)
    if frames > cfg.max_frames:
        shown = f"more than {cfg.max_frames}" if frames == cfg.max_frames + 1 else f"{frames}"
        raise InputProblem(f"The file {name} has {shown} pictures (frames); the limit is "
                           f"{cfg.max_frames} per video (max_frames). Record a shorter clip.",
                           413)
    if megapixel_frames > cfg.max_megapixel_frames:
        raise InputProblem(f"The file {name} is too large to check: {frames} pictures of "
                           f"{info.width}x{info.height} pixels ({megapixel_frames:,.0f} million "
                           f"pixels in all; the limit is {cfg.max_megapixel_frames:,.0f} per "
                           "video (max_megapixel_frames)). Record a shorter clip, or at a "
                           "lower resolution.", 413)


# --------------------------------------------------------------------------------------------
# Upload folders: <tmp>/cprclip-serve-<pid>-<random>/ per server, one take-*/ per request

TMP_PREFIX = "cprclip-serve-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def clean_stale_uploads(tmp_dir: str | Path | None = None) -> list[Path]:
    """Remove the upload folders of servers that are gone (killed before their shutdown could
    remove them); returns what was removed.

    A folder is removed only when it is a real folder (not a link) owned by this user, named
    ``cprclip-serve-<pid>-*``, and no process ``<pid>`` runs. Folders of live servers, and
    unnamed ones of older versions (their owner is unknown), are left alone.
    """
    root = Path(tmp_dir or tempfile.gettempdir())
    removed = []
    for d in sorted(root.glob(TMP_PREFIX + "*")):
        m = re.fullmatch(re.escape(TMP_PREFIX) + r"(\d+)-.+", d.name)
        try:
            st = d.lstat()
        except OSError:
            continue
        if not m or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        shutil.rmtree(d, ignore_errors=True)
        if not d.exists():
            removed.append(d)
    if removed:
        log.warning("removed %d upload folder(s) left by server(s) that were killed: %s",
                    len(removed), ", ".join(str(d) for d in removed))
    return removed


# --------------------------------------------------------------------------------------------
# The web app


class _BodyLimit:
    """ASGI middleware: a POST body larger than ``limit`` bytes is refused with 413 before it is
    parsed (by Content-Length when given, else while it streams in)."""

    def __init__(self, app, limit: int, message: str):
        self.app, self.limit, self.message = app, limit, message

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            body = json.dumps({"detail": self.message}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, self.message)  # FastAPI answers it as JSON
            return msg

        await self.app(scope, limited, send)


def _fmt_mb(x: float) -> str:
    return f"{x:g} MB"


# The form of POST /predict and POST /jobs (module level: FastAPI resolves annotations here).
FilesField = Annotated[list[UploadFile] | None, File(
    description="1-4 video files: the camera views of one take")]
ViewsField = Annotated[list[str] | None, Form(
    description="the view number (1-4) of each file, in order; default 1, 2, ...")]


def create_app(cfg: ServeConfig, analyser: Analyser | None = None, predict_cfg=None):
    """The FastAPI app. ``analyser`` defaults to :class:`AssistantAnalyser` on ``cfg.run``
    (loaded now, once); tests pass their own."""
    from contextlib import asynccontextmanager

    if analyser is None:
        analyser = AssistantAnalyser(predict_cfg or predict_config_for(cfg), cfg.thumb_height)
    clean_stale_uploads()
    tmp_root = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
    store = JobStore(analyser, cfg.max_concurrent_takes, cfg.max_queue, cfg.keep_results,
                     cfg.job_timeout_s)
    limit_file = int(cfg.max_upload_mb * MB)

    @asynccontextmanager
    async def lifespan(app):
        yield
        store.close()
        shutil.rmtree(tmp_root, ignore_errors=True)

    app = FastAPI(
        title="CPR-CLIP assistant",
        description="Upload the 1-4 camera views of one CPR take; get the detected errors and "
                    "what to correct. The page at / does this for people.",
        version="1", lifespan=lifespan,
        # No /docs or /redoc: FastAPI's pages load Swagger UI / ReDoc from a CDN, which the CSP
        # below forbids and an offline machine cannot reach. The schema is /openapi.json.
        docs_url=None, redoc_url=None)
    app.state.cfg, app.state.analyser, app.state.store, app.state.tmp_root = (
        cfg, analyser, store, tmp_root)
    # Total body: every file at the limit plus room for the form's other fields.
    app.add_middleware(
        _BodyLimit, limit=cfg.max_files * limit_file + MB,
        message=f"The upload is too large: at most {cfg.max_files} videos of "
                f"{_fmt_mb(cfg.max_upload_mb)} each.")

    @app.middleware("http")
    async def no_network(request, call_next):
        # The page may load only what this server serves: no CDN, no outside requests.
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    info = analyser.describe()

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/health", summary="Is the server up, which model does it use, what are the limits")
    def health() -> dict[str, Any]:
        return {"status": "ok", **info, "notes": plain_notes(info.get("warnings", [])),
                "max_files": cfg.max_files,
                "max_upload_mb": cfg.max_upload_mb, "max_duration_s": cfg.max_duration_s,
                "max_frames": cfg.max_frames, "max_megapixel_frames": cfg.max_megapixel_frames,
                "job_timeout_s": cfg.job_timeout_s, "stages": [
                    {"key": k, "label": v} for k, v in analyser.stages()],
                "pending": store.pending()}

    async def accept(files: list[UploadFile] | None, views: list[str] | None) -> Job:
        """Check the form, save the files under generated names, check each is a video."""
        files = [f for f in files or [] if f is not None]
        views = views or []
        if not files:
            raise HTTPException(400, "No video was sent: choose 1 to "
                                     f"{cfg.max_files} videos of one session.")
        if len(files) > cfg.max_files:
            raise HTTPException(400, f"{len(files)} files were sent; at most {cfg.max_files} "
                                     "videos (one per camera, all of one session) can be checked "
                                     "at once.")
        names = [display_name(f.filename) for f in files]
        if not views:
            nums = list(range(1, len(files) + 1))
        else:
            try:
                nums = [int(v) for v in views]
            except ValueError:
                raise HTTPException(400, f"View numbers must be whole numbers 1 to 4, got "
                                         f"{', '.join(map(str, views))[:80]}.") from None
            if len(nums) != len(files):
                raise HTTPException(400, f"{len(nums)} view numbers for {len(files)} videos; give "
                                         "one view number per video.")
        if any(n not in (1, 2, 3, 4) for n in nums) or len(set(nums)) != len(nums):
            raise HTTPException(400, f"Each video needs its own view number from 1 to 4 "
                                     f"(got {', '.join(map(str, nums))}).")
        for f, name in zip(files, names):
            size = f.size if f.size is not None else _size(f.file)
            if size == 0:
                raise HTTPException(400, f"The file {name} is empty.")
            if size > limit_file:
                raise HTTPException(413, f"The file {name} is {size / MB:.0f} MB; the limit is "
                                         f"{_fmt_mb(cfg.max_upload_mb)} per video.")
        workdir = Path(tempfile.mkdtemp(prefix="take-", dir=tmp_root))
        job = Job(id=uuid.uuid4().hex, views=nums, names=names, stages=[
            ("queued", "Waiting for its turn"), *analyser.stages()], workdir=workdir)
        paths = [workdir / f"view{n}.video" for n in nums]
        try:
            for f, p in zip(files, paths):
                await run_in_threadpool(_save, f.file, p)
            for p, n, name in zip(paths, nums, names):
                try:  # what decoding would cost, from the header, before anything is decoded
                    await run_in_threadpool(check_limits, p, cfg, f"{name} (view {n})")
                except InputProblem as e:
                    raise HTTPException(e.status, str(e) if e.status == 413 else
                                        f"The file {name} (view {n}) is not a video that can be "
                                        "read: choose a video file such as .mp4 or .avi.") from None
                try:
                    await run_in_threadpool(analyser.check_video, p)
                except InputProblem as e:
                    raise HTTPException(e.status, f"The file {name} (view {n}) is not a video "
                                                  "that can be read: choose a video file such as "
                                                  ".mp4 or .avi.") from None
            store.submit(job, paths)
        except Busy as e:
            shutil.rmtree(workdir, ignore_errors=True)
            raise HTTPException(503, str(e)) from None
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        log.info("job %s: %d view(s) %s", job.id, len(paths), nums)
        return job

    @app.post("/jobs", status_code=202, summary="Start checking a take; poll GET /jobs/{id}",
              responses={400: {"description": "bad form (no file, too many, bad view, empty)"},
                         413: {"description": "a file or the upload is too large, or a video is "
                                               "longer / has more frames or pixels than the "
                                               "limits in /health"},
                         415: {"description": "a file is not a readable video"},
                         503: {"description": "too many takes waiting"}})
    async def create_job(files: FilesField = None, views: ViewsField = None) -> dict[str, Any]:
        job = await accept(files, views)
        return {"id": job.id, "status_url": f"/jobs/{job.id}"}

    @app.get("/jobs/{job_id}", summary="Stage, and when finished the result or the error")
    def get_job(job_id: str) -> dict[str, Any]:
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, "The server no longer knows this check (results are kept "
                                     "for a while only): check the videos again.")
        return job.public()

    @app.post("/predict", summary="Check a take and wait for the result",
              responses={400: {"description": "bad form (no file, too many, bad view, empty)"},
                         413: {"description": "a file or the upload is too large, or a video is "
                                               "longer / has more frames or pixels than the "
                                               "limits in /health"},
                         415: {"description": "a file is not a readable video"},
                         422: {"description": "a video the model cannot use"},
                         500: {"description": "the analysis failed"},
                         504: {"description": "the analysis ran past job_timeout_s"}})
    async def predict(files: FilesField = None, views: ViewsField = None):
        job = await accept(files, views)
        await asyncio.wrap_future(job.outcome)
        if job.status != "done":
            return JSONResponse({"detail": job.error}, status_code=job.http_status or 500)
        return job.result

    return app


def _size(f) -> int:
    pos = f.tell()
    f.seek(0, 2)
    n = f.tell()
    f.seek(pos)
    return n


def _save(src, dst: Path) -> None:
    src.seek(0)
    with open(dst, "xb") as out:  # "x": a generated name that already exists is a bug
        shutil.copyfileobj(src, out, 1 << 20)


# --------------------------------------------------------------------------------------------
# Command line


def predict_config_for(cfg: ServeConfig, config_path: str | None = None, overrides=()):
    """The assistant's ``[predict]`` config with ``run``/``runs_dir`` taken from ``[serve]``."""
    from dataclasses import replace

    from assist.assistant import PredictConfig
    from pipeline.config import load_stage_config

    pc = load_stage_config(PredictConfig, "predict", config_path, list(overrides))
    return replace(pc, run=cfg.run or pc.run, runs_dir=cfg.runs_dir)


def split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """``cprclip serve``'s ``key=value`` items -> (``[serve]`` items, ``[predict]`` items).

    One convention with the stages and ``cprclip predict``: a key of ``[serve]`` (``run`` and
    ``runs_dir`` included; the server hands them to the assistant) overrides ``[serve]``; a key
    only ``[predict]`` has (``head``, ``threshold_source``, ``device``, ``bce_threshold``,
    ``clip_z``) overrides ``[predict]``, as it would after ``cprclip predict VIDEO``. Any other
    key is a ConfigError that lists both sets."""
    from dataclasses import fields

    from assist.assistant import PredictConfig
    from pipeline.config import ConfigError

    serve_keys = {f.name for f in fields(ServeConfig)} | set(ServeConfig.RENAMED)
    predict_keys = {f.name for f in fields(PredictConfig)} - serve_keys
    to_serve, to_predict = [], []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key = item.split("=", 1)[0].strip()
        if key in serve_keys:
            to_serve.append(item)
        elif key in predict_keys:
            to_predict.append(item)
        else:
            raise ConfigError(
                f"override {key} is not a key of [serve] ({', '.join(sorted(serve_keys))}) nor "
                f"of the assistant's [predict] ({', '.join(sorted(predict_keys))})")
    return to_serve, to_predict


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)
    p.epilog = ("key=value overrides [serve] (run, port, max_upload_mb, ...) or, for keys only "
                "[predict] has, the assistant's settings (head, threshold_source, device, "
                "bce_threshold, clip_z): e.g. cprclip serve run=runs/bce port=8080 head=bce")
    p.add_argument("--predict-set", action="append", default=[], metavar="KEY=VALUE",
                   help="deprecated: write KEY=VALUE (a key of [predict]) like the others")


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from assist.assistant import PredictError
    from pipeline.config import load_stage_config

    serve_items, predict_items = split_overrides(list(args.overrides))
    for item in args.predict_set:
        log.warning("--predict-set is deprecated: write %s as a plain key=value (cprclip serve "
                    "--config %s %s)", item, args.config, item)
    # the deprecated flag first, so that a plain key=value given too wins
    cfg = load_stage_config(ServeConfig, "serve", args.config, serve_items)
    pcfg = predict_config_for(cfg, args.config, [*args.predict_set, *predict_items])
    try:
        app = create_app(cfg, predict_cfg=pcfg)
    except (PredictError, FileNotFoundError, ValueError, RuntimeError) as e:
        log.error("cannot start: %s", first_line(e))
        return 1
    log.info("open http://%s:%d/ in a browser (API schema: /openapi.json); Ctrl+C stops",
             cfg.host, cfg.port)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", access_log=False)
    return 0
