"""`cprclip serve` on a tiny real run (rgb + flow): the same answer as `cprclip predict`."""
from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import pytest

from evaluate.serve import ServeConfig, create_app
from pipeline.taxonomy import ADVICE, CLASSES


@pytest.fixture(scope="module")
def real_client(tiny_run):
    from fastapi.testclient import TestClient

    cfg = ServeConfig(runs_dir=str(tiny_run["runs"]), run="cpr_clip_plus")
    app = create_app(cfg)
    with TestClient(app) as client:
        yield client, app


def test_predict_matches_the_assistant(real_client, tiny_run):
    from evaluate.assistant import PredictConfig, predict_take

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
    assert res["looks_correct"] == (not res["errors"])
    # the sampled frames: 4 segments per view, each a real JPEG
    for v in ("1", "2"):
        assert len(res["frames"][v]) == 4
        head, data = res["frames"][v][0].split(",", 1)
        assert head == "data:image/jpeg;base64" and base64.b64decode(data)[:2] == b"\xff\xd8"
    # what `cprclip predict` says about the same files
    ref = predict_take(take, [1, 2], PredictConfig(runs_dir=str(tiny_run["runs"]),
                                                   run="cpr_clip_plus"))
    np.testing.assert_allclose([res["scores"][c] for c in CLASSES],
                               [ref.scores[c] for c in CLASSES], rtol=1e-5, atol=1e-6)
    assert [e["id"] for e in res["errors"]] == [d.id for d in ref.errors]
    assert list(Path(app.state.tmp_root).rglob("*")) == []  # videos and flow removed


def test_job_goes_through_the_flow_stage(real_client, tiny_run):
    client, app = real_client
    assert [s["key"] for s in client.get("/health").json()["stages"]] == [
        "check", "flow", "features", "score"]
    p = tiny_run["take"][0]
    form = [("files", (p.name, p.read_bytes(), "video/mp4"))]
    job_id = client.post("/jobs", files=form).json()["id"]
    seen = set()
    t0 = time.time()
    while time.time() - t0 < 60:
        job = client.get(f"/jobs/{job_id}").json()
        seen.add(job["stage"])
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.02)
    assert job["status"] == "done", job["error"]
    assert seen <= {"queued", "check", "flow", "features", "score"}
    assert list(Path(app.state.tmp_root).rglob("*")) == []


def test_real_check_refuses_a_non_video(real_client, tmp_path):
    client, _ = real_client
    r = client.post("/predict", files=[("files", ("report.pdf", b"%PDF-1.4 not a video" * 20,
                                                  "application/pdf"))])
    assert r.status_code == 415 and "report.pdf" in r.json()["detail"]
    assert client.get("/health").json()["status"] == "ok"
