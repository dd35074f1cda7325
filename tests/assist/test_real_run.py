"""`cprclip serve` on a tiny real run (rgb + flow): the same answer as `cprclip predict`."""
from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from assist.server import ServeConfig, create_app
from pipeline.taxonomy import ADVICE, CLASSES


@pytest.fixture(scope="module")
def real_client(tiny_run):
    from fastapi.testclient import TestClient

    cfg = ServeConfig(runs_dir=str(tiny_run["runs"]), run="cpr_clip_plus")
    app = create_app(cfg)
    with TestClient(app) as client:
        yield client, app


def test_predict_matches_the_assistant(real_client, tiny_run):
    from assist import Assistant

    client, app = real_client
    take = tiny_run["take"]
    files = [("files", (p.name, p.read_bytes(), "video/mp4")) for p in take]
    r = client.post("/predict", files=files, data={"views": ["1", "2"]})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["run"] == "cpr_clip_plus" and res["views"] == [1, 2]
    assert res["files"] == [p.name for p in take]
    assert list(res["scores"]) == list(CLASSES)
    for e in res["errors"]:
        assert e["advice"] == ADVICE[e["id"]] and e["name"] == CLASSES[e["id"]]
    assert res["looks_correct"] == (res["verdict"] == "correct")
    assert res["verdict"] in ("errors", "correct", "not_sure", "unsuitable")
    if res["verdict"] != "errors":  # not sure or unsuitable: no error list
        assert res["errors"] == []
    # the sampled frames: 4 segments per view, each a real JPEG
    for v in ("1", "2"):
        assert len(res["frames"][v]) == 4
        head, data = res["frames"][v][0].split(",", 1)
        assert head == "data:image/jpeg;base64" and base64.b64decode(data)[:2] == b"\xff\xd8"
    # what `cprclip predict` says about the same files (it is this call)
    ref = Assistant.load(tiny_run["run"]).analyse(take, [1, 2])
    np.testing.assert_allclose([res["scores"][c] for c in CLASSES],
                               [ref.scores[c] for c in CLASSES], rtol=1e-5, atol=1e-6)
    assert [e["id"] for e in res["errors"]] == [d.id for d in ref.errors]
    assert res["verdict"] == ref.verdict and res["reason"] == ref.reason
    assert [c["id"] for c in res["candidates"]] == [d.id for d in ref.candidates]
    # never evaluated: no calibration, so the page shows raw scores and never says "correct"
    assert res["probabilities"] is None and res["verdict"] != "correct"
    assert client.get("/health").json()["score_kind"] in ("score", "similarity")
    np.testing.assert_allclose([res["per_view_scores"][v] for v in ("1", "2")],
                               ref.per_view_scores, rtol=1e-5, atol=1e-6)
    # the page's answer is predict's JSON plus the keys only the page needs
    assert set(res) == set(ref.to_dict()) | {"frames", "per_view_scores", "files", "notes",
                                             "explanation"}
    assert res["videos"] == ["view 1", "view 2"]  # never the server's temporary paths
    assert list(Path(app.state.tmp_root).rglob("*")) == []  # videos and flow removed


def test_job_goes_through_the_flow_stage(real_client, tiny_run, monkeypatch):
    """The job is held inside the flow stage until a status poll has seen it there, so the test
    fails if the flow stage is skipped or never reported (flow of a tiny clip takes
    milliseconds: polling alone would miss it)."""
    client, app = real_client
    assert [s["key"] for s in client.get("/health").json()["stages"]] == [
        "check", "flow", "features", "score"]
    analyser = app.state.analyser
    real_analyse = analyser.analyse
    entered: list[str] = []
    in_flow, release = threading.Event(), threading.Event()

    def held_in_flow(videos, views, progress):
        def stage(key):
            entered.append(key)
            progress(key)
            if key == "flow":
                in_flow.set()
                assert release.wait(60), "the test never released the flow stage"
        return real_analyse(videos, views, stage)

    monkeypatch.setattr(analyser, "analyse", held_in_flow)
    p = tiny_run["take"][0]
    form = [("files", (p.name, p.read_bytes(), "video/mp4"))]
    job_id = client.post("/jobs", files=form).json()["id"]
    try:
        assert in_flow.wait(60), f"the job never entered the flow stage (stages: {entered})"
        job = client.get(f"/jobs/{job_id}").json()
        assert job["status"] == "running" and job["stage"] == "flow", job
        assert {s["key"]: s["state"] for s in job["stages"]} == {
            "queued": "done", "check": "done", "flow": "active", "features": "waiting",
            "score": "waiting"}
    finally:
        release.set()
    t0 = time.time()
    while time.time() - t0 < 60:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.02)
    assert job["status"] == "done", job["error"]
    assert entered == ["check", "flow", "features", "score"]
    assert all(s["state"] == "done" for s in job["stages"])
    assert list(Path(app.state.tmp_root).rglob("*")) == []


def test_real_check_refuses_a_non_video(real_client, tmp_path):
    client, _ = real_client
    r = client.post("/predict", files=[("files", ("report.pdf", b"%PDF-1.4 not a video" * 20,
                                                  "application/pdf"))])
    assert r.status_code == 415 and "report.pdf" in r.json()["detail"]
    assert client.get("/health").json()["status"] == "ok"
