"""Output paths built from names that came from a user's file (a manifest ``video_id``).

A ``video_id`` becomes a file name in several stages (flow videos, caches). A name such as
``../../x`` or ``/etc/x`` would then write outside the stage's folder, so every such path goes
through :func:`safe_child`, and the manifest loader refuses an id that :func:`name_problem`
rejects, so a bad id is named on its row before any stage runs.
"""
from __future__ import annotations

from pathlib import Path

# Long enough for any real id (CPR-Coach's are ~12 characters); short enough that id plus a
# suffix stays far below the 255-byte file-name limit of common file systems, even in UTF-8.
MAX_NAME = 128


class UnsafeNameError(ValueError):
    """A name that cannot be used as one file name inside a folder."""


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe single file name, or None when it is.

    Safe: non-empty, at most :data:`MAX_NAME` characters, no ``/`` or ``\\`` (one path component
    on every OS), no leading ``.`` (neither ``..`` nor a hidden file), only printable characters
    (no NUL, newline or terminal escape that would break a file name or a one-line message).
    """
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long (at most {MAX_NAME})"
    if "/" in name or "\\" in name:
        return "contains a path separator ('/' or '\\'); it must be one file name"
    if name.startswith("."):
        return "starts with '.'; it must not be hidden or a relative path"
    bad = next((c for c in name if not c.isprintable()), None)
    if bad is not None:
        return f"contains the control character {bad!r}"
    return None


def safe_child(root: str | Path, name: str, suffix: str = "") -> Path:
    """``root / (name + suffix)``, refusing a name that is not one safe file name or a path that
    resolves outside ``root`` (e.g. through a symlink planted at that name).

    Raises :class:`UnsafeNameError` with a one-line message naming the name and the folder.
    """
    root = Path(root)
    problem = name_problem(name)
    if problem is not None:
        raise UnsafeNameError(f"{name!r} {problem}; refusing to write under {root}")
    path = root / f"{name}{suffix}"
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafeNameError(f"{path} resolves outside {root}; refusing to write there")
    return path


__all__ = ["MAX_NAME", "UnsafeNameError", "name_problem", "safe_child"]
