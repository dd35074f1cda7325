"""One run convention for every trainer (``cprclip finetune`` and ``cprclip train``).

A trainer's run folder holds, besides its own weights:

- ``metrics.jsonl``: one JSON object per finished epoch, with an ``"epoch"`` key (1-based), one
  line each, **appended** as the epoch ends (:class:`MetricsLog`). A run that starts over
  empties it; a resumed run first drops the rows of epochs after the epoch it resumes from,
  because those epochs run again. A half-written last line (a run killed, or a disk filled,
  mid-write) is dropped with a warning; any other line that is not JSON is an error naming the
  file and the line.
- ``tensorboard/``: TensorBoard events of the same scalars (:func:`open_tensorboard`); removed
  when a run starts over, purged after the resumed point when it resumes.
- a resume state (finetune: ``state.pt``, train: ``last.safetensors``) with the last saved
  epoch and the run's *identity*: the config without the run-control keys (which may differ
  between an interrupted call and its rerun: device, threads, workers, where files live...)
  and the sha256 of its inputs (manifest, initial weights, feature files).

The resume rule, the ``resume`` key of both trainers (:func:`read_state`, :func:`resume_after`):

- ``"auto"``: continue after the saved epoch when the saved identity equals this call's,
  otherwise (or when the state cannot be read) start over with a warning that names what
  differs (finetune's default: its epochs are long, and an interrupted ``make all`` should
  pick up where it stopped);
- ``true``: continue; a different identity or an unreadable state is an error that names
  what differs or the file, a missing state a warning (the run starts fresh);
- ``false``: start over (train's default: each call trains anew).

Continuing restores weights, optimizer and random state, so a resumed run ends with the
weights of an uninterrupted one (each trainer tests this).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from pipeline.atomic import write_atomic
from pipeline.log import first_line

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
Resume = bool | Literal["auto"]  # both trainers' ``resume`` key: true, false or "auto"
T = TypeVar("T")


class ResumeError(ValueError):
    """``resume = true`` but the saved state belongs to another config or other inputs."""


def fingerprint(identity: dict[str, Any]) -> str:
    """sha256 of a run's identity (JSON with sorted keys)."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def identity_diff(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two identities (``["config.lr"]``)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out: list[str] = []
        for k in sorted(set(saved) | set(current), key=str):
            out += identity_diff(saved.get(k), current.get(k), f"{prefix}{k}.")
        return out
    if json.dumps(saved, sort_keys=True, default=str) == json.dumps(current, sort_keys=True,
                                                                      default=str):
        return []
    return [prefix.rstrip(".") or "(identity)"]


@dataclass(frozen=True)
class SavedState:
    """What a resume state says about itself: its last saved epoch and the run's identity.
    ``identity`` is None for a state that stored only its fingerprint."""

    epoch: int
    fingerprint: str
    identity: dict[str, Any] | None = None


def read_state(mode: Resume, path: Path, load: Callable[[Path], T]) -> T | None:
    """The resume state at ``path`` read with ``load``, or None: when ``resume = false``, when
    there is none, or (``"auto"`` only, with a warning) when it cannot be read. With
    ``resume = true`` an unreadable state is an error: ``load``'s, which names the file."""
    if mode is False or not Path(path).is_file():
        return None
    try:
        return load(Path(path))
    except (ValueError, OSError) as e:
        if mode is True:
            raise
        log.warning("%s: cannot read the saved state (%s); starting over", path, first_line(e))
        return None


def resume_after(mode: Resume, saved: SavedState | None, identity: dict[str, Any],
                 where: Path | str, epochs: int) -> int:
    """The epoch to continue after (0 = start over), by the rule in the module docstring.
    ``where`` names the run in the log lines; ``epochs`` is the run's total."""
    if mode is False or saved is None:
        if mode is True:
            log.warning("%s: resume=true but there is no saved state; starting fresh", where)
        return 0
    if saved.fingerprint == fingerprint(identity):
        log.info("%s: resuming after epoch %d of %d", where, saved.epoch, epochs)
        return saved.epoch
    diff = identity_diff(saved.identity, identity) if saved.identity is not None else []
    what = ", ".join(diff) if diff else "config or inputs"
    if mode is True:
        raise ResumeError(f"{where}: cannot resume, the saved state differs in {what}")
    log.warning("%s: the saved state is for another config or other inputs (%s); starting over",
                where, what)
    return 0


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` ([] when absent); a half-written last line is dropped."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in _complete_lines(path)]


def _complete_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    keep = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            ok = isinstance(json.loads(line), dict)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            if i == last:
                log.warning("%s: line %d is half written (an interrupted run); dropped", path, i + 1)
                break
            raise ValueError(f"{path}: line {i + 1} is not a JSON object: {line[:80]!r}")
        keep.append(line)
    return keep


class MetricsLog:
    """A run's ``metrics.jsonl``: :meth:`start` once per call, then :meth:`append` per epoch."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def start(self, after_epoch: int) -> None:
        """Keep the rows of epochs ``<= after_epoch`` (none when 0: the run starts over), each
        line as it was written; complete-or-absent rewrite."""
        kept = []
        if after_epoch:
            kept = [line for line in _complete_lines(self.path)
                    if json.loads(line).get("epoch", 0) <= after_epoch]
        write_atomic(self.path, "".join(line + "\n" for line in kept))

    def append(self, row: dict[str, Any]) -> None:
        """Append one row as one line. A failed write (a full disk) cuts the file back to its
        previous length where it can, and raises ``OSError`` naming the file."""
        data = (json.dumps(row, sort_keys=True) + "\n").encode("utf-8")
        with open(self.path, "ab") as f:
            size = f.tell()
            try:
                f.write(data)
                f.flush()
            except OSError as e:
                try:
                    f.truncate(size)
                except OSError:
                    pass  # the reader drops a half-written last line anyway
                raise OSError(e.errno, e.strerror or str(e), str(self.path)) from None


def open_tensorboard(run_dir: Path, purge_step: int | None):
    """A SummaryWriter on ``<run_dir>/tensorboard/``. ``purge_step=None``: the run starts over,
    old events are removed; else events at steps ``>= purge_step`` (from the interrupted call)
    are dropped as the resumed run writes."""
    from torch.utils.tensorboard import SummaryWriter

    tb = Path(run_dir) / TENSORBOARD_DIR
    if purge_step is None:
        shutil.rmtree(tb, ignore_errors=True)
    return SummaryWriter(log_dir=os.fspath(tb), purge_step=purge_step)
