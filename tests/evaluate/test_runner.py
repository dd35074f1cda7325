"""The eval runner and CLI on a tiny fake runs tree."""
import json

import numpy as np
import pytest

from evaluate import runner as R
from pipeline.cli import main as cli_main


def test_eval_cli_writes_metrics_report_and_table(fake_runs, tmp_path, capsys):
    report = tmp_path / "report"
    # runs/finetune is not a model run (the fake loader cannot load it): `exclude` skips it
    rc = cli_main(["eval", "--config", "configs/synthetic.toml", f"runs_dir={fake_runs}",
                   f"report_dir={report}", "exclude=finetune"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "cpr_clip" in out and "bce" in out and "mAP fused-mean" in out
    assert not (fake_runs / "finetune" / "metrics.json").exists()
    m = json.loads((fake_runs / "cpr_clip" / "metrics.json").read_text())
    assert list(m["heads"]) == ["clip"]
    video = m["heads"]["clip"]["test"]["video"]
    # "Correct" never occurs in a composite clip: skipped, and said so
    assert video["map"]["policy"] == "skip" and 0 in video["map"]["skipped"]
    assert 0.3 < video["map"]["value"] <= 1.0
    assert set(video["by_view"]) == {"1", "2"}
    assert m["heads"]["clip"]["test"]["take_mean"]["map"]["n_rows"] == 12
    thr = json.loads((fake_runs / "bce" / "thresholds.json").read_text())
    assert len(thr["heads"]["bce"]["values"]) == 14
    for f in ("report.md", "report.html", "per_class_ap.png", "pr_curves.png"):
        assert (report / f).stat().st_size > 0


def test_eval_named_run_and_missing_run(fake_runs, tmp_path):
    rc = cli_main(["eval", f"runs_dir={fake_runs}", f"report_dir={tmp_path / 'r'}",
                   "--run", "bce"])
    assert rc == 0
    assert not (fake_runs / "cpr_clip" / "metrics.json").exists()
    assert cli_main(["eval", f"runs_dir={fake_runs}", "--run", "nope"]) == 1


def test_eval_config_rejects_bad_values():
    assert cli_main(["eval", "decision_fusion=median"]) == 2
    assert cli_main(["eval", "no_such_key=1"]) == 2


def test_two_modalities_joined_on_video_id(tmp_path, feature_file_factory):
    make_feature_file = feature_file_factory
    a = make_feature_file(tmp_path / "rgb.h5", "rgb", seed=1)
    b = make_feature_file(tmp_path / "flow.h5", "flow", seed=2, n_takes_test=10)
    sets = R.read_run_features({"rgb": a, "flow": b})
    assert sets["rgb"].video_id.tolist() == sets["flow"].video_id.tolist()
    assert len(sets["rgb"]) == (10 + 14 + 14) * 2


def test_random_init_detected():
    from pipeline.features import FeatureRecipe, is_random_init

    assert is_random_init({"init": "random"}) and not is_random_init({"init": "kinetics400"})
    assert is_random_init(FeatureRecipe("tsn_r18", "rgb", 8, init="random"))
    assert not is_random_init(FeatureRecipe("tsn_r18", "rgb", 8, init="checkpoint"))


def test_zscore_fallback_always_predicts_top():
    s = np.array([[0.1, 0.1, 0.1, 0.9], [0.2, 0.21, 0.2, 0.2]])
    p = R.zscore_predictions(s, z=1.0)
    assert p[0].tolist() == [0, 0, 0, 1] and p[1, 1] == 1


def test_thresholds_file_holds_the_rule_the_report_measures(fake_runs, tmp_path):
    """Re-deciding the test takes with the operating point read back from thresholds.json (as
    the assistant reads it) gives exactly the figures metrics.json and the report print."""
    from evaluate import metrics as M
    from evaluate.decide import decide_many, ood_from, operating_point_from, read_thresholds
    from pipeline.features import read_features
    from pipeline.provenance import sha256_file

    assert cli_main(["eval", f"runs_dir={fake_runs}", f"report_dir={tmp_path / 'r'}",
                     "imagined_takes=200", "--run", "bce"]) == 0
    run = fake_runs / "bce"
    record = read_thresholds(run, sha256_file(run / "checkpoint.safetensors"))
    assert record["version"] == 2 and record["checkpoint"]["path"] == "checkpoint.safetensors"
    op = operating_point_from(record, "bce")
    ood = ood_from(record, run)
    assert op.calibrated and op.rule in ("calibrated_global", "imagined_f1", "calibrated_half",
                                         "val_f1", "calibrated_precision")
    assert ood is not None and (run / "ood.npz").is_file()
    m = json.loads((run / "metrics.json").read_text())
    head = m["heads"]["bce"]
    assert head["rules"]["chosen"] == op.rule and len(head["rules"]["rows"]) == 5  # the demo sets target_precision
    assert head["calibration"]["test"]["ece"] is not None
    # the assistant's way, by hand: fuse the views (mean), check, decide
    fs = read_features(fake_runs.parent / "features" / "fake-rgb-2seg.h5")
    test = fs.split == "test"
    x = fs.features[test]
    scores = 1 / (1 + np.exp(-4 * (x.mean(axis=1) - 0.5)))  # the fake run's bce head
    fused = M.fuse_views(scores, fs.labels[test], fs.take_id[test], "mean")
    bad = ood.unsuitable(ood.ratios({"rgb": x}))
    assert not bad.any()  # the fake test takes are like the training ones
    pred, verdicts = decide_many(fused.scores, op)
    want = M.set_metrics(pred, fused.labels)
    got = head["decisions"]["take_mean"]
    for k in ("precision_micro", "recall_micro", "f1_micro", "exact_set_accuracy"):
        assert got[k] == pytest.approx(want[k])
    assert got["verdicts"]["errors"] == verdicts.count("errors")
    assert got["false_all_clear"] == 0  # no composite test take is ever called correct


def test_stale_thresholds_are_refused(fake_runs, tmp_path):
    from evaluate.decide import StaleThresholds, read_thresholds

    assert cli_main(["eval", f"runs_dir={fake_runs}", f"report_dir={tmp_path / 'r'}",
                     "imagined_takes=50", "--run", "cpr_clip"]) == 0
    (fake_runs / "cpr_clip" / "checkpoint.safetensors").write_bytes(b"retrained")
    from pipeline.provenance import sha256_file

    with pytest.raises(StaleThresholds, match="cprclip eval --run cpr_clip"):
        read_thresholds(fake_runs / "cpr_clip",
                        sha256_file(fake_runs / "cpr_clip" / "checkpoint.safetensors"))
