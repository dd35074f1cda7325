"""End to end: the page in headless Chromium against a live server on 127.0.0.1 and a real run.

A person's steps: open the page, try a file that is not a video (a clear message), choose the
two views of a demo take, press the button, wait for the result, read the error list. The
screenshot goes to test-artifacts/serve_result.png (and to $CPRCLIP_DOCS_SCREENSHOT if set).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from assist.server import ServeConfig, create_app

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def browser_ready():
    """Skip (with the reason) before anything is built when the browser cannot run."""
    from chromium_cdp import find_chromium

    if find_chromium() is None:
        pytest.skip("browser test skipped: headless Chromium is not installed "
                    "(/usr/bin/chromium); `make browser-deps` installs Debian's chromium")
    try:
        import websocket  # noqa: F401
    except ImportError:
        pytest.skip("browser test skipped: websocket-client is not installed (make setup)")


@pytest.fixture(scope="module")
def live_server(browser_ready, tiny_run):
    """uvicorn on 127.0.0.1 on a free port, in a thread; stopped after the module."""
    import uvicorn

    app = create_app(ServeConfig(runs_dir=str(tiny_run["runs"]), run="cpr_clip_plus"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.time()
    while not server.started:
        assert time.time() - t0 < 30 and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(15)


def api_predict(base: str, paths: list[Path]) -> dict:
    """The same take through POST /predict (multipart by hand: stdlib only)."""
    boundary = "cprclipboundary"
    body = b""
    for i, p in enumerate(paths, 1):
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                 f"filename=\"{p.name}\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
        body += p.read_bytes() + b"\r\n"
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"views\"\r\n\r\n"
                 f"{i}\r\n").encode()
    body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{base}/predict", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def test_page_end_to_end(browser_ready, live_server, tiny_run, tmp_path):
    from chromium_cdp import Chromium

    base, app = live_server
    take = tiny_run["take"]
    not_video = tmp_path / "notes.txt"
    not_video.write_text("not a video\n" * 20)
    with Chromium(tmp_path / "profile", width=1200, height=900) as b:
        b.open(base + "/", ready="document.body && document.body.dataset.ready === '1'")
        assert "cpr_clip_plus" in b.eval("document.getElementById('model-info').textContent")
        assert b.eval("document.getElementById('analyse').disabled") is True

        # 1. a file that is not a video: a clear message, nothing else happens
        b.set_files("#view1-input", [not_video])
        b.wait("document.getElementById('slot1').classList.contains('filled')", 10)
        b.eval("document.getElementById('analyse').click()")
        msg = b.wait("(() => { const m = document.getElementById('message');"
                     " return !m.hidden && m.textContent; })()", 30)
        assert "notes.txt" in msg and "not a video" in msg
        b.eval("document.querySelector('#slot1 .remove').click()")
        # the browser logs the refused upload (415) as a failed load; only that may be there
        assert all("415" in e for e in b.console_errors()), b.console_errors()
        b.events.clear()

        # 2. the two views of a demo take
        b.set_files("#view1-input", [take[0]])
        b.set_files("#view2-input", [take[1]])
        names = b.eval("[1, 2].map(v => document.getElementById('view' + v + '-name').textContent)")
        assert take[0].name in names[0] and take[1].name in names[1]
        b.eval("document.getElementById('analyse').click()")
        b.wait("!document.getElementById('progress').hidden || "
               "!document.getElementById('result').hidden", 30)
        b.wait("!document.getElementById('result').hidden", 120, poll=0.25)
        assert b.eval("document.getElementById('message').hidden") is True

        # 3. the error list is what the API says about the same take
        shown = b.eval("[...document.querySelectorAll('#errors li .name')].map(e => e.textContent)")
        verdict = b.eval("document.getElementById('verdict').textContent")
        expected = api_predict(base, take)
        assert shown == [e["name"] for e in expected["errors"]]
        if expected["errors"]:
            n = len(expected["errors"])
            assert verdict == (f"{n} thing to correct" if n == 1 else f"{n} things to correct")
            todo = b.eval("[...document.querySelectorAll('#errors li .todo')]"
                          ".map(e => e.textContent)")
            assert todo[0] == "What to do: " + expected["errors"][0]["advice"].capitalize() + "."
        else:
            assert "look correct" in verdict
        assert b.eval("document.querySelectorAll('#chart rect').length") == 14
        assert b.eval("[...document.querySelectorAll('#frames .strip')]"
                      ".map(s => s.querySelectorAll('img').length)") == [4, 4]
        assert b.eval("[...document.querySelectorAll('#frames img')]"
                      ".every(i => i.complete && i.naturalWidth > 0)")
        assert b.console_errors() == [], b.console_errors()

        # 4. the screenshot
        shot = b.screenshot(ARTIFACTS / "serve_result.png")
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("CPRCLIP_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["CPRCLIP_DOCS_SCREENSHOT"])
    assert list(Path(app.state.tmp_root).rglob("*")) == []


def test_no_docs_page_only_the_schema(live_server):
    """Issue 16, item 9: /docs loaded Swagger UI from a CDN against the page's CSP and could not
    work offline; it is gone, and the OpenAPI schema is served as JSON."""
    import urllib.error

    base, _ = live_server
    for page in ("/docs", "/redoc"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + page, timeout=10)
        assert e.value.code == 404, page
    with urllib.request.urlopen(base + "/openapi.json", timeout=10) as r:
        schema = json.load(r)
    assert "/predict" in schema["paths"] and "/docs" not in schema["paths"]
