"""A small driver for Debian's headless Chromium over the DevTools protocol (no driver binary).

It starts ``/usr/bin/chromium`` with a fresh profile and no background networking, connects to
the page's DevTools websocket on 127.0.0.1, and offers what the browser test needs: open a URL,
evaluate JavaScript, put files into an ``<input type=file>``, wait for a condition (bounded),
and take a full-page screenshot. Every wait has a time limit.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

# Debian's package; CPRCLIP_CHROMIUM points elsewhere (or at nothing, to see the skip).
CHROMIUM = os.environ.get("CPRCLIP_CHROMIUM", "/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")


def find_chromium() -> str | None:
    if "CPRCLIP_CHROMIUM" in os.environ:
        return CHROMIUM if Path(CHROMIUM).is_file() else None
    return CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")


class Chromium:
    def __init__(self, profile: Path, width: int = 1200, height: int = 900, timeout: float = 30,
                 mobile: bool = False):
        """``mobile``: emulate a phone of that width (the page's viewport tag applies, and
        scrollbars overlay the page instead of taking its width)."""
        import websocket  # websocket-client

        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("chromium not found (make browser-deps installs it)")
        profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.events: list[dict] = []
        self._id = 0
        try:
            port = self._wait_port(profile / "DevToolsActivePort", timeout)
            target = self._page_target(port, timeout)
            self.ws = websocket.create_connection(target, timeout=timeout, suppress_origin=True)
            for domain in ("Page", "Runtime", "DOM", "Log"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=mobile)
        except BaseException:
            self.close()
            raise

    def _wait_port(self, path: Path, timeout: float) -> int:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.proc.returncode}")
            if path.is_file():
                lines = path.read_text().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def _page_target(self, port: int, timeout: float) -> str:
        t0 = time.time()
        while time.time() - t0 < timeout:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise TimeoutError("chromium has no page target")

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        """One DevTools command; returns its result (events that arrive meanwhile are kept)."""
        self._id += 1
        msg_id = self._id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        t0 = time.time()
        while time.time() - t0 < timeout:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)
        raise TimeoutError(f"{method}: no answer in {timeout} s")

    def eval(self, expression: str):
        """The value of a JavaScript expression (JSON-able), awaiting promises."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expression!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url: str, ready: str = "document.readyState === 'complete'",
             timeout: float = 30) -> None:
        self.send("Page.navigate", url=url)
        self.wait(ready, timeout)

    def wait(self, expression: str, timeout: float = 30, poll: float = 0.1):
        t0 = time.time()
        while time.time() - t0 < timeout:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(poll)
        raise TimeoutError(f"waited {timeout} s for {expression}")

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """Choose ``paths`` in the file input ``selector`` (fires its change event)."""
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise RuntimeError(f"no element {selector}")
        self.send("DOM.setFileInputFiles", nodeId=node,
                  files=[str(Path(p).resolve()) for p in paths])

    # key -> (code, Windows virtual key code, text it types)
    KEYS = {"Tab": ("Tab", 9, ""), "Enter": ("Enter", 13, "\r"), " ": ("Space", 32, " ")}

    def press(self, key: str, shift: bool = False) -> None:
        """Press and release ``key`` (Tab, Enter or " ") as a user would: trusted key events,
        so Tab moves the focus and Space/Enter activate the focused control."""
        code, vk, text = self.KEYS[key]
        mods = 8 if shift else 0
        common = dict(key=key, code=code, windowsVirtualKeyCode=vk, nativeVirtualKeyCode=vk,
                      modifiers=mods)
        self.send("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        self.send("Input.dispatchKeyEvent", type="keyUp", **common)

    def intercept_file_chooser(self) -> None:
        """From now on, a file chooser the page opens is reported (:meth:`answer_file_chooser`)
        instead of shown."""
        self.send("Page.setInterceptFileChooserDialog", enabled=True)

    def wait_event(self, method: str, timeout: float = 10) -> dict:
        """The params of the next (or an already received) DevTools event ``method``."""
        t0 = time.time()
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    return self.events.pop(i)["params"]
            left = timeout - (time.time() - t0)
            if left <= 0:
                raise TimeoutError(f"no {method} in {timeout} s")
            import websocket

            before = self.ws.gettimeout()
            self.ws.settimeout(left)
            try:
                self.events.append(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                pass  # the loop says which event never came
            finally:
                self.ws.settimeout(before)

    def answer_file_chooser(self, paths: list[Path], timeout: float = 10) -> None:
        """Choose ``paths`` in the file chooser the page opened (after
        :meth:`intercept_file_chooser`); TimeoutError when none opened."""
        opened = self.wait_event("Page.fileChooserOpened", timeout)
        self.send("DOM.setFileInputFiles", backendNodeId=opened["backendNodeId"],
                  files=[str(Path(p).resolve()) for p in paths])

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (not only the window)."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        w, h = int(size["width"]), int(min(size["height"], 6000))
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def console_errors(self) -> list[str]:
        """Errors the page logged or threw (a CSP violation shows up here too)."""
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(json.dumps(e["params"]["exceptionDetails"])[:300])
            elif e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
                out.append(e["params"]["entry"].get("text", "")[:300])
            elif (e.get("method") == "Runtime.consoleAPICalled"
                  and e["params"].get("type") == "error"):
                out.append(json.dumps(e["params"].get("args"))[:300])
        return out

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def screenshot_result(base: str, videos: list[Path], out: Path, profile: Path,
                      timeout: float = 300, width: int = 1200) -> Path:
    """Open the page at ``base``, choose ``videos`` as views 1.., check them, save a screenshot.
    A ``width`` under 600 px is taken as a phone's (:class:`Chromium` ``mobile``)."""
    with Chromium(profile, width=width, height=900, mobile=width < 600) as b:
        b.open(base + "/", ready="document.body && document.body.dataset.ready === '1'")
        for view, video in enumerate(videos, 1):
            b.set_files(f"#view{view}-input", [video])
        b.eval("document.getElementById('analyse').click()")
        b.wait("!document.getElementById('result').hidden || "
               "!document.getElementById('message').hidden", timeout, poll=0.25)
        b.eval("window.scrollTo(0, 0)")
        return b.screenshot(out)


if __name__ == "__main__":
    # Screenshot of a real result from a running `cprclip serve` (docs/serve.md):
    #   .venv/bin/python tests/assist/chromium_cdp.py [--width 390] \
    #       http://127.0.0.1:8000 OUT.png VIDEO ...
    import sys
    import tempfile

    args = sys.argv[1:]
    width = 1200
    if args[:1] == ["--width"] and len(args) > 1:
        width, args = int(args[1]), args[2:]
    if len(args) < 3:
        sys.exit("usage: chromium_cdp.py [--width PX] BASE_URL OUT.png VIDEO [VIDEO ...]")
    with tempfile.TemporaryDirectory(prefix="cprclip-chromium-") as tmp:
        shot = screenshot_result(args[0].rstrip("/"), [Path(v) for v in args[2:]],
                                 Path(args[1]), Path(tmp) / "profile", width=width)
    sys.stdout.write(f"{shot}\n")
