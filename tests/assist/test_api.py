"""The HTTP API of `cprclip serve` with a stub model: forms, bad input, isolation, clean-up, the
four verdicts, the trainer's wording, and the `cprclip serve` command line."""
from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from assist.server import (ServeConfig, display_name, explain, plain_notes, plain_problem,
                           split_overrides)
from pipeline.config import ConfigError, load_stage_config
from pipeline.taxonomy import CLASSES, NUM_CLASSES

# engineer's words that a trainer must never read on the page
JARGON = ("mark", "calibrat", "threshold", "z-score", "cprclip", "thresholds.json", "flow frames",
          "min_frames", "ood", "fallback")


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


from upload_helpers import leftovers  # noqa: E402


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
    assert detail.startswith("The check stopped because of a problem inside the assistant")
    assert "try again" in detail.lower() and "boom" in detail and "view 1 (clip0.mp4)" in detail
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


def test_cli_refuses_a_missing_run_and_lists_the_runs_there(tmp_path, capfd, monkeypatch):
    """Issue 17: `run=runs/nope` was reported as `runs/runs/nope`, without the runs there are."""
    from pipeline.cli import main as cli_main

    config = Path("configs/synthetic.toml").resolve()
    for name in ("bce", "cpr_clip_plus"):  # what makes a folder a trained run: its checkpoint
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "checkpoint.safetensors").write_bytes(b"")
    (tmp_path / "runs" / "unfinished").mkdir()
    monkeypatch.chdir(tmp_path)
    rc = cli_main(["serve", "--config", str(config), "runs_dir=runs", "run=runs/nope", "port=0"])
    assert rc == 1
    err = capfd.readouterr().err
    assert "cannot start" in err and "run runs/nope not found" in err, err
    assert "runs/runs/nope" not in err
    assert "trained runs under runs: bce, cpr_clip_plus" in err, err


# --- the four verdicts ----------------------------------------------------------------------

@pytest.mark.parametrize("verdict", ["errors", "correct", "not_sure", "unsuitable"])
def test_each_verdict_reaches_the_page_with_its_fields(stub_server, clips, verdict):
    from test_assistant import PREDICT_JSON_KEYS

    client, stub, app = stub_server()
    stub.verdict = verdict
    r = client.post("/predict", files=upload(clips), data={"views": ["1", "2", "3", "4"]})
    assert r.status_code == 200, r.text
    res = r.json()
    assert set(PREDICT_JSON_KEYS) <= set(res)  # the assistant's answer, passed through
    assert res["verdict"] == verdict and res["views"] == [1, 2, 3, 4]
    assert res["looks_correct"] == (verdict == "correct")
    assert bool(res["errors"]) == (verdict == "errors")
    assert list(res["probabilities"]) == list(CLASSES) and list(res["marks"]) == list(CLASSES)
    for e in res["errors"] + res["candidates"]:  # calibrated: each says how likely it is
        assert 0 <= e["probability"] <= 1 and 0 < e["mark"] < 1
        assert e["description"] and e["advice"]  # plain words added by the server
    assert [len(res["frames"][v]) for v in "1234"] == [4, 4, 4, 4]
    text = res["explanation"]
    assert not any(j in text.lower() for j in JARGON), text
    if verdict == "unsuitable":
        assert res["errors"] == [] and res["candidates"] == []
        assert "do not look like" in text and "lists no mistakes" in text
        assert res["input_check"]["unsuitable_views"] == [1, 2, 3, 4]
    elif verdict == "not_sure":
        assert [c["name"] for c in res["candidates"]] == [
            "Tilting Arms", "Insufficient Pressing", "Slow Frequency"]
        assert "came close" in text and "Tilting Arms" in text
        assert "camera views" not in text  # all four were given: no advice to add more
    elif verdict == "correct":
        assert text == ("The assistant found no mistake, and it is 94% sure the compressions are "
                        "correct.")
    assert leftovers(app) == []


def test_an_analyser_without_verdicts_still_gets_one(stub_server, clips):
    client, stub, _ = stub_server()  # the stub's default answer has no verdict field
    res = client.post("/predict", files=upload(clips[:1])).json()
    assert res["verdict"] == "errors" and res["errors"] and res["explanation"] == ""


def test_health_says_whether_the_scores_are_probabilities():
    """describe()'s score_kind is "probability" only for a calibrated operating point."""
    from types import SimpleNamespace

    from assist.server import AssistantAnalyser
    from evaluate.decide import OperatingPoint

    def kind(head, calibrated):
        op = OperatingPoint(head, "test", np.full(NUM_CLASSES, 0.5),
                            calibration=object() if calibrated else None)
        a = AssistantAnalyser.__new__(AssistantAnalyser)
        a.assistant = SimpleNamespace(
            op=op, head=head, ood=None, recipes={}, threshold_source="val", warnings=[],
            run=SimpleNamespace(name="r", model_name="m"))
        d = a.describe()
        assert d["calibrated"] is calibrated and d["input_check"] is False
        return d["score_kind"]

    assert kind("bce", True) == "probability" and kind("clip", True) == "probability"
    assert kind("bce", False) == "score" and kind("clip", False) == "similarity"


def _decided(scores, op, views=(1,)):
    """A result as the server builds it, from the real decision rule."""
    from evaluate.decide import decide

    d = decide(np.asarray(scores, float), op)
    probs = None if d.probabilities is None else dict(zip(CLASSES, d.probabilities.tolist()))
    return {"verdict": d.verdict, "reason": d.reason, "probabilities": probs,
            "views": list(views), "errors": [{"name": CLASSES[c]} for c in d.errors],
            "candidates": [{"name": CLASSES[c]} for c in d.candidates]}


def test_every_not_sure_reason_of_the_rule_is_said_without_jargon():
    """Each branch of evaluate.decide's "not sure" (uncalibrated, an error near its level, a low
    "Correct") and "correct", through explain(): no engineer's word reaches the page. If decide
    words a reason differently, this fails rather than the page printing it."""
    from evaluate.calibration import Calibration
    from evaluate.decide import OperatingPoint

    ident = Calibration("isotonic", "identity", (True,) * NUM_CLASSES,
                        tuple({"x": [0.0, 1.0], "y": [0.0, 1.0]} for _ in range(NUM_CLASSES)))
    op = OperatingPoint("bce", "t", np.full(NUM_CLASSES, 0.5), ident, correct_level=0.8)
    near = np.full(NUM_CLASSES, 0.1)
    near[[0, 5]] = [0.9, 0.45]  # Tilting Arms just under its level
    low = np.full(NUM_CLASSES, 0.1)
    low[0] = 0.6  # nothing near, but "Correct" only 60 % (it needs 80 %)
    sure = np.full(NUM_CLASSES, 0.1)
    sure[0] = 0.93
    raw = OperatingPoint("bce", "fixed", np.full(NUM_CLASSES, 0.5))  # not calibrated
    cases = {
        "near": (_decided(near, op, (1, 2)), ["came close", "Tilting Arms", "other camera views"]),
        "low": (_decided(low, op, (1, 2, 3, 4)), ["only 60% sure", "needs 80%"]),
        "raw": (_decided(near, raw), ["not been tuned", "cannot confirm"]),
        "correct": (_decided(sure, op), ["found no mistake", "93% sure"]),
    }
    for name, (res, words) in cases.items():
        text = explain(res)
        assert res["verdict"] == ("correct" if name == "correct" else "not_sure"), name
        assert all(w in text for w in words), (name, text)
        assert not any(j in text.lower() for j in JARGON), (name, text)


def test_every_kind_of_assistant_warning_becomes_a_trainer_note(tmp_path):
    """The warnings Assistant.load can give (made here by the real code where it can be)."""
    import json

    from assist.assistant import PredictConfig, load_operating_point
    from evaluate.decide import SYNTHETIC_NOTE

    _, _, _, missing = load_operating_point(tmp_path, "bce", PredictConfig(), None)
    (tmp_path / "thresholds.json").write_text(json.dumps(
        {"heads": {"bce": {"values": [0.5] * NUM_CLASSES}}}))
    _, _, _, old = load_operating_point(tmp_path, "bce", PredictConfig(), None)
    random = ("run r was trained on rgb features from a RANDOMLY initialised backbone "
              "(tsn_r18): its advice is a demo, not a judgement of real CPR")
    warnings = [*missing, *old, random, SYNTHETIC_NOTE]
    assert len(warnings) >= 5, warnings
    notes = plain_notes(warnings)
    for n in notes:
        assert not any(j in n.lower() for j in JARGON), n
    text = " ".join(notes)
    assert "demonstration model" in text and "computer-made" in text
    assert "cannot tell whether a video shows chest compressions" in text
    assert "not been tuned" in text
    assert plain_notes(["something new"]) == ["something new"]  # unknown: said, not hidden


def test_a_too_short_video_is_said_in_seconds(clips):
    videos = list(clips[:2])  # 12 frames at 25 fps
    msg = plain_problem("/tmp/x/take-1/view2.flow.mp4: too few flow frames (4 < 7)", videos, [1, 2])
    assert msg == ("The video of camera 2 is too short to judge the motion: record at least "
                   "0.3 seconds of compressions.")
    msg = plain_problem("/tmp/x/view1.video: too few frames (3 < min_frames 50)", videos, [1, 2])
    assert msg == ("The video of camera 1 is too short to be checked: record at least 2 seconds "
                   "of compressions.")
    msg = plain_problem("/tmp/x/view2.video: a crop larger than the frame", videos, [1, 2])
    assert msg.startswith("The video of camera 2 cannot be used (a crop larger than the frame)")
    for m in (msg,):
        assert "/tmp" not in m


# --- `cprclip serve` takes key=value like the stages --------------------------------------------

def test_serve_overrides_split_between_serve_and_predict():
    serve, predict = split_overrides(["port=9000", "head=bce", "run=runs/bce", "device=cpu",
                                      "workers=2", "threshold_source=fixed"])
    assert serve == ["port=9000", "run=runs/bce", "workers=2"]
    assert predict == ["head=bce", "device=cpu", "threshold_source=fixed"]
    with pytest.raises(ConfigError, match=r"colour.*\[serve\].*max_upload_mb.*\[predict\].*head"):
        split_overrides(["colour=red"])
    with pytest.raises(ConfigError, match="not key=value"):
        split_overrides(["head"])


def test_serve_cli_hands_predict_keys_to_the_assistant(monkeypatch, capfd):
    """`cprclip serve head=bce` and the old `--predict-set head=bce` (with a warning naming the
    new form) reach the assistant's config; a wrong value is one config error."""
    import assist.server as S
    from pipeline.cli import main as cli_main

    got = {}

    def fake_app(cfg, analyser=None, predict_cfg=None):
        got["serve"], got["predict"] = cfg, predict_cfg
        raise RuntimeError("stop here")

    monkeypatch.setattr(S, "create_app", fake_app)
    assert cli_main(["serve", "port=0", "head=bce", "threshold_source=fixed", "run=x"]) == 1
    assert got["predict"].head == "bce" and got["predict"].threshold_source == "fixed"
    assert got["predict"].run == "x" and got["serve"].run == "x" and got["serve"].port == 0
    capfd.readouterr()
    assert cli_main(["serve", "--predict-set", "head=clip", "port=0"]) == 1
    assert got["predict"].head == "clip"
    err = capfd.readouterr().err
    assert "--predict-set is deprecated: write head=clip as a plain key=value" in err
    assert cli_main(["serve", "--predict-set", "head=clip", "head=bce", "port=0"]) == 1
    assert got["predict"].head == "bce"  # the new form wins
    assert cli_main(["serve", "head=banana", "port=0"]) == 2  # a config error, one line
