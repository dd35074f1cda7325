"""The real chain on tiny generated data: extract -> train -> `cprclip eval` -> `cprclip predict`."""
import json

from pipeline.cli import main as cli_main
from pipeline.taxonomy import ADVICE, CLASSES


def test_eval_then_predict(tiny_pipeline, video_tools, tmp_path, capsys):
    p = tiny_pipeline
    class_frames, write_video = video_tools
    report = tmp_path / "report"
    rc = cli_main(["eval", "--config", str(p["config"]), f"report_dir={report}"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "cpr_clip_plus" in out and "mAP fused-mean" in out
    m = json.loads((p["run"] / "metrics.json").read_text())
    assert set(m["heads"]) >= {"clip", "bce"}
    assert any("random" in w for w in m["warnings"])
    assert (report / "report.html").is_file() and (report / "per_class_ap.png").is_file()
    # the example takes show the frames of their videos, found through the manifest
    assert len(list(report.glob("examples-*.png"))) == 1
    assert "Example takes: the frames the model saw" in (report / "report.md").read_text()

    # a raw video that is in no manifest
    raw = write_video(tmp_path / "outside" / "my_take.mp4", class_frames((4, 11), seed=99))
    rc = cli_main(["predict", str(raw), "--config", str(p["config"]), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["run"] == "cpr_clip_plus" and res["views"] == [1]
    assert res["threshold_source"].startswith("val")
    assert set(res["scores"]) == set(CLASSES)
    assert res["verdict"] in ("errors", "correct", "not_sure", "unsuitable")
    assert res["probabilities"] is not None and set(res["probabilities"]) == set(CLASSES)
    for e in res["errors"]:
        assert e["advice"] == ADVICE[e["id"]] and e["score"] >= e["threshold"]
        assert e["probability"] >= e["mark"]  # reported only from its calibrated mark
    if res["verdict"] == "correct":  # never below the level the rule sets
        assert res["probabilities"]["Correct"] >= json.loads(
            (p["run"] / "thresholds.json").read_text())["heads"][res["head"]]["correct_level"]
    assert any("RANDOMLY" in w for w in res["warnings"])

    # two views of a demo take, text output
    v1, v2 = p["data"] / "videos" / "te0_v1.mp4", p["data"] / "videos" / "te0_v2.mp4"
    args = ["predict", str(v1), str(v2), "--views", "2", "4", "--config", str(p["config"]),
            "head=clip", "threshold_source=fixed"]  # [predict] overrides, as the stages take
    assert cli_main(args + ["--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    assert "te0_v1.mp4 (view 2)" in text and "te0_v2.mp4 (view 4)" in text
    # the text says what the same prediction's JSON found, and only that
    if same["verdict"] == "errors":
        assert f"Detected {len(same['errors'])} error(s)" in text and "look correct" not in text
        assert all(e["name"] in text and e["advice"] in text for e in same["errors"])
    elif same["verdict"] == "correct":
        assert "No error detected: the compressions look correct" in text
        assert "Detected" not in text
    else:
        # the fixed rule is uncalibrated: it never vouches for a take
        assert same["verdict"] in ("not_sure", "unsuitable") and not same["looks_correct"]
        assert "look correct" not in text and "Detected" not in text


def test_predict_unreadable_video_one_line_error(tiny_pipeline, tmp_path, capsys):
    good = tiny_pipeline["data"] / "videos" / "te0_v1.mp4"
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    rc = cli_main(["predict", str(good), str(bad), "--config", str(tiny_pipeline["config"])])
    assert rc == 1
    cap = capsys.readouterr()
    assert cap.out == ""
    errors = [line for line in cap.err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and str(bad) in errors[0] and str(good) not in errors[0]
    rc = cli_main(["predict", str(tmp_path / "missing.mp4"), "--config",
                   str(tiny_pipeline["config"])])
    assert rc == 1


def test_predict_rejects_bad_views(tiny_pipeline, capsys):
    v = tiny_pipeline["data"] / "videos" / "te0_v1.mp4"
    assert cli_main(["predict", str(v), "--views", "5", "--config",
                     str(tiny_pipeline["config"])]) == 1
    assert "--views" in capsys.readouterr().err
