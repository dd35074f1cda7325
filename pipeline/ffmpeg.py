"""Find an ``ffmpeg`` executable without root: the system's first, else imageio-ffmpeg's."""
from __future__ import annotations

import functools
import os
import shutil


class FFmpegNotFound(RuntimeError):
    pass


@functools.cache
def ffmpeg_exe() -> str:
    """Path of ffmpeg: $CPRCLIP_FFMPEG, then PATH (Debian's package), then imageio-ffmpeg's
    static build from PyPI, which needs no root."""
    env = os.environ.get("CPRCLIP_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - any failure means "not found"
        raise FFmpegNotFound(
            "no ffmpeg found: install Debian's 'ffmpeg' or run 'make setup' (imageio-ffmpeg)"
        ) from e
