"""A stdlib-only client of ``cprclip serve``: send one take's videos, get the analysis back.

    from assist.client import post_take
    status, answer, seconds = post_take("http://127.0.0.1:8000", ["v1.mp4", "v2.mp4"])

The views are numbered in the order given (1, 2, ...) unless ``views`` says otherwise. Used by
scripts that talk to a running server (bench/serve_load.py) and by the browser tests.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

BOUNDARY = "cprclip-take"


def multipart_take(paths: list[str | Path], views: list[int] | None = None) -> tuple[bytes, str]:
    """The multipart/form-data body of POST /predict (``files`` and ``views`` fields) and its
    content type."""
    views = views or list(range(1, len(paths) + 1))
    if len(views) != len(paths):
        raise ValueError(f"{len(paths)} videos but {len(views)} view numbers")
    parts = []
    for p, v in zip(map(Path, paths), views):
        parts.append(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
                     f"filename=\"{p.name}\"\r\nContent-Type: video/mp4\r\n\r\n".encode()
                     + p.read_bytes() + b"\r\n")
        parts.append(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"views\"\r\n\r\n"
                     f"{v}\r\n".encode())
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={BOUNDARY}"


def post_take(base_url: str, paths: list[str | Path], views: list[int] | None = None,
              timeout: float = 600, endpoint: str = "/predict") -> tuple[int, dict, float]:
    """POST one take to ``<base_url><endpoint>`` (``/predict`` answers when done, ``/jobs``
    queues it): (HTTP status, JSON answer, seconds taken).
    Error statuses (413, 503, 504, ...) come back as the status and the server's JSON body."""
    body, ctype = multipart_take(paths, views)
    req = urllib.request.Request(base_url.rstrip("/") + endpoint, data=body, method="POST",
                                 headers={"Content-Type": ctype})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.load(r), time.perf_counter() - t0
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"detail": raw.decode("utf-8", "replace")[:200]}
        return e.code, answer, time.perf_counter() - t0
