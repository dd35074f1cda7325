"""Helpers shared by the web-API tests (not a test module)."""
from __future__ import annotations

import time
from pathlib import Path


def leftovers(app) -> list[Path]:
    """What is left under the server's upload folder. A job's thread may remove its folder while
    we walk the tree (rglob then fails on the vanished folder): list again."""
    for _ in range(100):
        try:
            return sorted(Path(app.state.tmp_root).rglob("*"))
        except FileNotFoundError:
            time.sleep(0.01)
    return sorted(Path(app.state.tmp_root).rglob("*"))
