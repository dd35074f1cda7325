"""The HTTP API of `cprclip serve` with a stub model: forms, bad input, isolation, clean-up."""
from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path

import pytest

from assist.server import ServeConfig, display_name
from pipeline.config import ConfigError, load_stage_config


def upload(paths, names=None):
    names = names or [Path(p).name for p in paths]
    return [("files", (n, Path(p).read_bytes(), "video/mp4")) for p, n in zip(paths, names)]


def wait_job(client, job_id, limit_s=20.0):
    t0 = time.time()
    while time.time() - t0 < limit_s:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {limit_s} s")


def leftovers(app) -> list[Path]:
    return sorted(Path(app.state.tmp_root).rglob("*"))


def test_health_and_openapi(stub_server):
    client, _, _ = stub_server(max_files=3)
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["run"] == "stub" and h["max_files"] == 3
    assert [s["key"] for s in h["stages"]] == ["check", "score"]
    schema = client.get("/openapi.json").json()
    assert {"/health", "/predict", "/jobs", "/jobs/{job_id}"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert {"413", "415"} <= set(schema["paths"]["/predict"]["post"]["responses"])
    # No Swagger/ReDoc page: FastAPI's loads its script from a CDN, which the CSP forbids and an
    # offline machine cannot reach (issue 16, item 9); the schema is served as JSON only.
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(page).status_code == 404, page
    assert client.get("/openapi.json").headers["content-type"].startswith("application/json")
    assert "/docs" not in schema["paths"]


def test_page_and_static_files_are_local(stub_server):
    client, _, _ = stub_server()
    page = client.get("/")
    assert page.status_code == 200 and "Check the compressions" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and len(r.text) > 500
        # nothing fetched from elsewhere (the SVG namespace is an identifier, not a request)
        urls = re.findall(r"https?://[^\s\"')]+", r.text)
        assert [u for u in urls if not u.startswith("http://www.w3.org/")] == [], name
    assert not re.findall(r"(src|href)=\"https?://", page.text)
    for link in re.findall(r"(?:src|href)=\"(/[^\"]*)\"", page.text):  # no dead local link
        assert client.get(link).status_code == 200, link


def test_predict_one_view(stub_server, clips):
    client, stub, app = stub_server()
    r = client.post("/predict", files=upload(clips[:1]), data={"views": ["3"]})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["views"] == [3] and res["files"] == ["clip0.mp4"]
    assert res["sha"]["3"] == hashlib.sha256(clips[0].read_bytes()).hexdigest()
    e = res["errors"][0]
    assert e["description"] and e["advice"]  # plain words added by the server
    assert leftovers(app) == []


def test_views_default_to_upload_order(stub_server, clips):
    client, stub, _ = stub_server()
    r = client.post("/predict", files=upload(clips[:3]))
    assert r.status_code == 200 and r.json()["views"] == [1, 2, 3]


def test_job_reports_stages_then_result(stub_server, clips):
    client, stub, app = stub_server()
    stub.gate = threading.Event()
    r = client.post("/jobs", files=upload(clips[:2]), data={"views": ["2", "4"]})
    assert r.status_code == 202
    job_id = r.json()["id"]
    assert stub.entered.acquire(timeout=10)
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "running" and job["stage"] == "check"
    states = {s["key"]: s["state"] for s in job["stages"]}
    assert states == {"queued": "done", "check": "active", "score": "waiting"}
    assert len(leftovers(app)) == 3  # the take's folder and its two videos, while it works
    stub.gate.set()
    job = wait_job(client, job_id)
    assert job["status"] == "done" and job["http_status"] == 200
    assert all(s["state"] == "done" for s in job["stages"])
    assert job["result"]["views"] == [2, 4]
    assert leftovers(app) == []
    assert client.get("/jobs/nope").status_code == 404


@pytest.mark.parametrize("case", ["no_file", "five_files", "empty", "text", "image", "too_big",
                                  "view_zero", "view_five", "view_twice", "view_count",
                                  "view_word"])
def test_bad_input_is_a_4xx_with_a_reason(stub_server, clips, tmp_path, case):
    client, stub, app = stub_server(max_upload_mb=0.05)
    clip = clips[0]
    text = tmp_path / "notes.txt"
    text.write_text("this is not a video\n" * 50)
    png = tmp_path / "photo.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(png), np.zeros((32, 32, 3), np.uint8))
    big = tmp_path / "big.mp4"
    big.write_bytes(clip.read_bytes() + b"\0" * 60_000)
    files, data, status, words = {
        "no_file": ([], {}, 400, "no video"),
        "five_files": (upload([clip] * 5), {}, 400, "at most 4"),
        "empty": ([("files", ("e.mp4", b"", "video/mp4"))], {}, 400, "empty"),
        "text": (upload([clip, text]), {"views": ["1", "2"]}, 415, "notes.txt (view 2)"),
        "image": (upload([png]), {}, 415, "photo.png"),
        "too_big": (upload([big]), {}, 413, "limit"),
        "view_zero": (upload([clip]), {"views": ["0"]}, 400, "view number"),
        "view_five": (upload([clip]), {"views": ["5"]}, 400, "view number"),
        "view_twice": (upload([clip, clip]), {"views": ["2", "2"]}, 400, "view number"),
        "view_count": (upload([clip, clip]), {"views": ["1"]}, 400, "one view number per video"),
        "view_word": (upload([clip]), {"views": ["front"]}, 400, "whole numbers"),
    }[case]
    r = client.post("/predict", files=files, data=data)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words.lower() in detail.lower(), detail
    assert str(app.state.tmp_root) not in detail  # never a server path
    assert stub.seen == []  # the model never ran
    assert leftovers(app) == []


def test_oversized_body_is_cut_off_before_parsing(stub_server):
    client, stub, app = stub_server(max_upload_mb=0.01, max_files=1)
    # 10 KB per file, 1 file + 1 MB slack: a 3 MB body is refused by its Content-Length ...
    r = client.post("/predict", files=[("files", ("a.mp4", b"\1" * 3_000_000, "video/mp4"))])
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    # ... and a streamed body without Content-Length is cut off while it arrives.
    def chunks():
        yield b"--xx\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.mp4\"\r\n\r\n"
        for _ in range(40):
            yield b"\1" * 100_000
        yield b"\r\n--xx--\r\n"

    r = client.post("/predict", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=xx"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    assert leftovers(app) == [] and stub.seen == []


def test_upload_names_are_never_paths(stub_server, clips, tmp_path):
    client, stub, app = stub_server()
    evil = ["../../../../tmp/evil.mp4", "/etc/passwd", "a\\..\\b.mp4"]
    r = client.post("/predict", files=upload(clips[:3], names=evil))
    assert r.status_code == 200, r.text
    assert r.json()["files"] == ["evil.mp4", "passwd", "b.mp4"]
    (paths,) = stub.seen
    assert [p.name for p in paths] == ["view1.video", "view2.video", "view3.video"]
    assert all(Path(app.state.tmp_root) in p.parents for p in paths)
    assert not Path("/tmp/evil.mp4").exists()
    assert display_name("x" * 200).endswith("...") and len(display_name("x" * 200)) == 80
    assert display_name("bad\x00\x1bname.mp4") == "badname.mp4"


def test_two_requests_at_once_keep_their_own_files(stub_server, clips):
    client, stub, app = stub_server(max_concurrent_takes=2)
    stub.gate = threading.Event()
    results = {}

    def send(k):
        r = client.post("/predict", files=upload([clips[k], clips[k + 2]]))
        results[k] = r

    threads = [threading.Thread(target=send, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    # both are inside the model at the same time before either may finish
    assert stub.entered.acquire(timeout=20) and stub.entered.acquire(timeout=20)
    dirs = {paths[0].parent for paths in stub.seen}
    assert len(dirs) == 2  # one temporary folder each
    stub.gate.set()
    for t in threads:
        t.join(30)
    for k in (0, 1):
        assert results[k].status_code == 200, results[k].text
        sha = results[k].json()["sha"]
        assert sha == {"1": hashlib.sha256(clips[k].read_bytes()).hexdigest(),
                       "2": hashlib.sha256(clips[k + 2].read_bytes()).hexdigest()}
    assert leftovers(app) == []


def test_a_crash_is_a_500_and_the_server_goes_on(stub_server, clips):
    client, stub, app = stub_server()
    stub.crash = True
    r = client.post("/predict", files=upload(clips[:1]))
    assert r.status_code == 500
    detail = r.json()["detail"]
    assert detail.startswith("The analysis failed: boom") and "view 1 (clip0.mp4)" in detail
    assert str(app.state.tmp_root) not in detail
    assert leftovers(app) == []
    # the same through a job: the failure is recorded on the job
    stub.crash = True
    job = wait_job(client, client.post("/jobs", files=upload(clips[:1])).json()["id"])
    assert job["status"] == "failed" and job["http_status"] == 500
    assert [s["state"] for s in job["stages"]] == ["done", "failed", "waiting"]
    # and the next request works
    r = client.post("/predict", files=upload(clips[1:2]))
    assert r.status_code == 200 and client.get("/health").json()["status"] == "ok"
    assert leftovers(app) == []


def test_a_full_queue_says_busy(stub_server, clips):
    client, stub, app = stub_server(max_queue=1)
    stub.gate = threading.Event()
    first = client.post("/jobs", files=upload(clips[:1]))
    assert first.status_code == 202
    r = client.post("/jobs", files=upload(clips[1:2]))
    assert r.status_code == 503 and "busy" in r.json()["detail"]
    stub.gate.set()
    assert wait_job(client, first.json()["id"])["status"] == "done"
    assert client.post("/jobs", files=upload(clips[1:2])).status_code == 202
    stub.gate.set()


def test_temp_root_is_removed_at_shutdown(stub_server):
    client, _, app = stub_server()
    root = Path(app.state.tmp_root)
    assert root.is_dir()
    client.__exit__(None, None, None)
    assert not root.exists()


def test_config_sections_load_and_validate():
    for path in ("configs/synthetic.toml", "configs/cpr_coach.toml"):
        cfg = load_stage_config(ServeConfig, "serve", path)
        assert cfg.host == "127.0.0.1" and cfg.max_files == 4 and cfg.max_upload_mb > 0
    for bad in ("max_files=5", "max_files=0", "max_upload_mb=0", "max_concurrent_takes=0",
                "workers=0", "port=70000"):
        with pytest.raises(ConfigError, match=r"\[serve\] key '"):
            load_stage_config(ServeConfig, "serve", None, [bad])
    with pytest.raises(ConfigError, match="max_files"):
        ServeConfig(max_files=5)  # built in code: checked too


def test_old_key_workers_still_works_and_names_its_new_spelling(caplog):
    with caplog.at_level("WARNING"):
        cfg = load_stage_config(ServeConfig, "serve", None, ["workers=3"])
    assert cfg.max_concurrent_takes == 3
    assert "'workers' is now called 'max_concurrent_takes'" in caplog.text
    with pytest.raises(ConfigError, match="valid keys"):
        load_stage_config(ServeConfig, "serve", None, ["colour=red"])


def test_cli_refuses_a_missing_run(tmp_path, capfd):
    from pipeline.cli import main as cli_main

    rc = cli_main(["serve", f"runs_dir={tmp_path}", "run=nope", "port=0"])
    assert rc == 1
    err = capfd.readouterr().err
    assert "cannot start" in err and "nope" in err
