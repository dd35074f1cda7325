"""One writer per output: an exclusive lock that dies with its process (extract, train).

Two runs writing one output (a feature file, a run folder) would interleave their files. The
second one refuses instead, with one line naming the output and the pid that holds it.
``flock`` is released by the kernel when its process ends, however it ends, so a killed run
never leaves a stale lock behind; the lock file itself stays, empty of meaning, and holds the
last holder's pid for the message.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class LockHeld(RuntimeError):
    """Another live process holds the lock; the message says who and what to do."""


def take_lock(lock_path: str | Path, busy: str) -> int | None:
    """Hold an exclusive lock on ``lock_path`` (created if missing); returns its fd, to be
    ``os.close``-d when done (closing releases it), or None on a file system without locks.

    ``busy`` is the error message when another process holds it; ``{pid}`` in it becomes that
    process's id. Raises :class:`LockHeld`.
    """
    import fcntl

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise LockHeld(busy.format(pid=other)) from None
    except OSError as e:  # a file system without flock (some NFS): run unguarded, say so
        log.warning("%s: cannot lock (%s); do not run two writers on it at once", lock_path,
                    e.strerror or e)
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def release(fd: int | None) -> None:
    """Release a lock :func:`take_lock` returned (None: nothing was held)."""
    if fd is not None:
        os.close(fd)


__all__ = ["LockHeld", "release", "take_lock"]
