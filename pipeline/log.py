"""One logging path and one progress-bar helper for every stage."""
from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def setup_logging(level: str | int = "INFO") -> None:
    """Log to stderr as ``LEVEL name: message``; call once from the CLI."""
    level = os.environ.get("CPRCLIP_LOG", level)
    logging.basicConfig(level=level, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("matplotlib", "PIL", "h5py", "urllib3", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress(it: Iterable[T], desc: str = "", total: int | None = None,
             unit: str = "it") -> Iterator[T]:
    """A tqdm bar on stderr; plain iteration when CPRCLIP_NO_PROGRESS is set (tests, CI logs)."""
    if os.environ.get("CPRCLIP_NO_PROGRESS"):
        yield from it
        return
    from tqdm import tqdm

    yield from tqdm(it, desc=desc, total=total, unit=unit, dynamic_ncols=True,
                    mininterval=1.0, file=sys.stderr)


# Terminal colour and cursor codes (ESC [ ... letter) that some libraries put in messages
# (torch's weights_only error): garbage in a log file, and a way to hide text on a terminal.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def first_line(e: BaseException | str, limit: int = 300) -> str:
    """The first line of an error's message, at most ``limit`` characters, without terminal
    codes: what a user is told in place of a traceback. An empty message gives the exception's
    type name."""
    text = _ANSI.sub("", str(e)).strip().splitlines()
    if not text:
        return type(e).__name__ if isinstance(e, BaseException) else ""
    line = text[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"
