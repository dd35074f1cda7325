"""Where an artifact came from: code version, file hashes."""
from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def code_version() -> str:
    """``<package version>+g<commit>[.dirty]`` when in a git checkout, else the package version."""
    try:
        from importlib.metadata import version

        base = version("cprclip")
    except Exception:
        base = "0+unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=ROOT, capture_output=True, text=True, timeout=5)
            suffix = ".dirty" if dirty.stdout.strip() else ""
            return f"{base}+g{commit.stdout.strip()}{suffix}"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return base
