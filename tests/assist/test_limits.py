"""What one upload may cost the server (issue 16, items 7 and 8): limits read from a video's
header before anything is decoded, a per-take time limit, and upload folders of a killed
server removed at the next start.

The over-limit uploads are GENERATED per limit (:data:`OVER`): each case is a video that passes
every limit but one, sent to a server whose limits are small; each must be a 413 naming the
limit's config key, with the model never called and nothing left in the upload folder.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from assist.server import InputProblem, ServeConfig
from pipeline.ffmpeg import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[2]


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


def lavfi(path: Path, frames: int, size: str = "64x48", rate: float = 25,
          codec: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast",
                                    "-pix_fmt", "yuv420p")) -> Path:
    """``frames`` frames of a plain grey picture (tiny files even for very many frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", f"color=c=gray:size={size}:rate={rate:g}", "-frames:v",
           str(frames), *codec, str(path))
    return path


def upload(path: Path, name: str | None = None):
    return [("files", (name or path.name, path.read_bytes(), "video/mp4"))]


from upload_helpers import leftovers  # noqa: E402


# case -> (file maker, server limits, config key the 413 must name). Each video is within the
# other limits of its case.
SMALL = dict(max_duration_s=3.0, max_frames=50, max_megapixel_frames=1.0)
OVER = {
    # 10 frames at 2 fps = 5 s: short in frames and pixels, long in time
    "duration": (lambda d: lavfi(d / "slow.mp4", 10, rate=2), SMALL, "max_duration_s"),
    # 60 frames at 50 fps = 1.2 s
    "frames": (lambda d: lavfi(d / "many.mp4", 60, size="16x16", rate=50), SMALL, "max_frames"),
    # 320x240 x 20 frames = 1.5 megapixel-frames, 0.8 s
    "pixels": (lambda d: lavfi(d / "large.mp4", 20, size="320x240"), SMALL,
               "max_megapixel_frames"),
    # a raw H.264 stream: its header gives no frame count or duration; the demux count does
    "frames_no_header": (lambda d: lavfi(d / "raw.h264", 60, size="16x16", rate=50,
                                         codec=("-c:v", "libx264", "-preset", "ultrafast",
                                                "-pix_fmt", "yuv420p", "-f", "h264")),
                         SMALL, "max_frames"),
    # Matroska: no frame count in the header (estimated from its duration)
    "frames_mkv": (lambda d: lavfi(d / "many.mkv", 60, size="16x16", rate=50), SMALL,
                   "max_frames"),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("limits")
    out = {case: make(d) for case, (make, _, _) in OVER.items()}
    out["ok"] = lavfi(d / "ok.mp4", 20, size="32x24")
    return out


@pytest.mark.parametrize("case", sorted(OVER))
def test_a_video_over_a_limit_is_a_413_naming_the_limit(stub_server, media, case):
    _, limits, key = OVER[case]
    client, stub, app = stub_server(**limits)
    r = client.post("/predict", files=upload(media[case]))
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert f"({key})" in detail and media[case].name in detail, detail
    assert detail.count("\n") == 0 and str(app.state.tmp_root) not in detail
    assert stub.seen == []  # the model never ran
    assert leftovers(app) == []
    # the same file passes the default limits (a raw stream then fails the stub's PyAV check:
    # PyAVReader numbers frames by pts, which a raw H.264 stream lacks)
    client2, stub2, _ = stub_server(max_upload_mb=1.0)
    r = client2.post("/predict", files=upload(media[case]))
    assert r.status_code == (415 if case == "frames_no_header" else 200), r.text


def test_the_issue_case_60000_small_frames_is_refused_at_once(stub_server, tmp_path):
    """The file of the issue: 64x48, 60,000 frames, ~840 KB, which took 174 CPU-s for one
    view; with the default limits it is refused from its header in well under a second."""
    big = lavfi(tmp_path / "long.mp4", 60_000)
    assert big.stat().st_size < 1_000_000
    client, stub, app = stub_server(max_upload_mb=1.0)  # every other limit: the default
    t0 = time.time()
    r = client.post("/predict", files=upload(big))
    assert r.status_code == 413, r.text
    assert time.time() - t0 < 5
    assert "2400 s long" in r.json()["detail"] and "(max_duration_s)" in r.json()["detail"]
    assert stub.seen == [] and leftovers(app) == []


def test_limits_are_in_health_and_checked_in_the_config(stub_server):
    client, _, _ = stub_server(max_frames=77, job_timeout_s=9)
    h = client.get("/health").json()
    assert h["max_frames"] == 77 and h["job_timeout_s"] == 9
    assert {"max_duration_s", "max_megapixel_frames"} <= set(h)
    from pipeline.config import ConfigError

    for bad in (dict(max_frames=0), dict(max_duration_s=0), dict(max_megapixel_frames=-1),
                dict(job_timeout_s=float("nan"))):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ServeConfig(**bad)


def test_check_limits_names_an_unreadable_file(tmp_path):
    from assist.server import check_limits

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 5000)
    with pytest.raises(InputProblem) as e:
        check_limits(junk, ServeConfig(), "junk.mp4 (view 1)")
    assert e.value.status == 415 and "junk.mp4" in str(e.value)


# --- the per-take time limit -------------------------------------------------------------------

def test_a_take_past_job_timeout_is_answered_504_and_the_server_goes_on(stub_server, media):
    client, stub, app = stub_server(job_timeout_s=0.5, max_upload_mb=1.0)
    stub.gate = threading.Event()  # the model never finishes on its own
    t0 = time.time()
    r = client.post("/predict", files=upload(media["ok"]))
    assert r.status_code == 504, r.text
    assert time.time() - t0 < 10
    assert "(job_timeout_s)" in r.json()["detail"]
    assert client.get("/health").json()["status"] == "ok"
    stub.gate.set()  # the thread ends later; its result is dropped, its folder removed
    t0 = time.time()
    while leftovers(app) and time.time() - t0 < 10:
        time.sleep(0.05)
    assert leftovers(app) == []
    job = list(app.state.store.jobs.values())[0]
    assert job.status == "failed" and job.http_status == 504 and job.result is None
    stub.gate = None
    assert client.post("/predict", files=upload(media["ok"])).status_code == 200


class DecodingForever:
    """A model that decodes its video again and again, as flow over a very long video would:
    the time limit must stop the thread itself, between frames."""

    def __init__(self):
        self.stopped: BaseException | None = None
        self.done = threading.Event()

    def describe(self):
        return {"run": "loop", "model": "loop", "warnings": []}

    def stages(self):
        return [("check", "Opening the videos")]

    def check_video(self, path):
        pass

    def analyse(self, videos, views, progress):
        from extract.decoders import PyAVReader

        progress("check")
        try:
            while True:
                with PyAVReader(videos[0]) as r:
                    for i in range(r.num_frames):
                        r.get([i])
        except BaseException as e:
            self.stopped = e
            raise
        finally:
            self.done.set()


def test_the_time_limit_stops_the_decoding_thread(media):
    from fastapi.testclient import TestClient

    from assist.server import create_app
    from extract.decoders import DecodeTimeout

    model = DecodingForever()
    app = create_app(ServeConfig(job_timeout_s=1.0), analyser=model)
    with TestClient(app) as client:
        r = client.post("/predict", files=upload(media["ok"]))
        assert r.status_code == 504 and "(job_timeout_s)" in r.json()["detail"]
        assert model.done.wait(10), "the decoding thread did not stop"
        assert isinstance(model.stopped, DecodeTimeout), model.stopped
        assert "job_timeout_s" in str(model.stopped)


# --- upload folders of a killed server ---------------------------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_clean_stale_uploads_removes_only_folders_of_dead_servers(tmp_path):
    from assist.server import clean_stale_uploads

    dead, live = _dead_pid(), os.getpid()
    stale = tmp_path / f"cprclip-serve-{dead}-abc"
    (stale / "take-1").mkdir(parents=True)
    (stale / "take-1" / "view1.video").write_bytes(b"a medical video")
    alive = tmp_path / f"cprclip-serve-{live}-def"
    (alive / "take-2").mkdir(parents=True)
    old_style = tmp_path / "cprclip-serve-k2j3h4"  # an older version's: owner unknown
    old_style.mkdir()
    outside = tmp_path / "elsewhere"
    (outside / "keep").mkdir(parents=True)
    link = tmp_path / f"cprclip-serve-{dead}-link"  # never followed
    link.symlink_to(outside)
    plain = tmp_path / f"cprclip-serve-{dead}-file"
    plain.write_text("not a folder")
    assert clean_stale_uploads(tmp_path) == [stale]
    assert not stale.exists()
    assert alive.is_dir() and old_style.is_dir() and (outside / "keep").is_dir()
    assert link.is_symlink() and plain.is_file()


SERVER = r"""
import sys, time
from pathlib import Path
from assist.server import ServeConfig, create_app

class Idle:
    def describe(self): return {"run": "idle", "warnings": []}
    def stages(self): return []
    def check_video(self, path): pass
    def analyse(self, videos, views, progress): return {}

app = create_app(ServeConfig(), analyser=Idle())
take = Path(app.state.tmp_root) / "take-x"
take.mkdir()
(take / "view1.video").write_bytes(b"an uploaded video of a person")
print(app.state.tmp_root, flush=True)
time.sleep(600)
"""


def test_uploads_of_a_killed_server_are_removed_at_the_next_start(tmp_path, monkeypatch):
    import tempfile

    from fastapi.testclient import TestClient

    from assist.server import create_app

    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))

    def start():
        p = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = p.stdout.readline().strip()
        assert line, "the server did not start"
        return p, Path(line)

    from assist_conftest import load

    StubAnalyser = load().StubAnalyser

    killed, killed_root = start()
    running, running_root = start()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert (killed_root / "take-x" / "view1.video").is_file()  # what SIGKILL leaves
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        app = create_app(ServeConfig(), analyser=StubAnalyser())
        with TestClient(app):
            assert not killed_root.exists()  # the dead server's upload is gone
            assert (running_root / "take-x" / "view1.video").is_file()  # a live one's stays
            assert Path(app.state.tmp_root).parent == tmp_path
            assert Path(app.state.tmp_root).name.startswith(f"cprclip-serve-{os.getpid()}-")
    finally:
        running.kill()
        running.wait()
