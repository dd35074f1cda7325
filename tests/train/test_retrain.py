"""A run folder's safety (issue 16, items 4, 5, 14 and the train follow-ups): retraining over a
finished run keeps the old model until the new one is complete, one writer per run, resume
does not care how runs_dir is spelt, and the rows follow the manifest without re-extraction."""
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError, load_stage_config
from pipeline.features import feature_path, read_features
from pipeline.lock import release, take_lock
from pipeline.provenance import sha256_file
from pipeline.taxonomy import NUM_CLASSES
from train.config import TrainConfig
from train.loop import prepare, train_one
from train.runs import load_run

from tiny_train_features import BACKBONE, DATASET

KW = dict(models=("bce",), epochs=4, val_every=1)


def _cfg(features, runs, **kw):
    base = dict(dataset=DATASET, backbone=BACKBONE, segments=4, features_dir=str(features),
                runs_dir=str(runs), text_encoder="test_hash", batch_size=32,
                imagine_per_epoch=32, hidden_dim=16, **KW)
    base.update(kw)
    return TrainConfig(**base)


def _eval_files(run: Path, sha: str) -> None:
    """What `cprclip eval` leaves in a run, tied to the checkpoint it scored."""
    for name in ("thresholds.json", "metrics.json"):
        (run / name).write_text(json.dumps({"checkpoint": {"sha256": sha}}))


def test_retrain_over_a_finished_run_keeps_it_until_the_new_one_is_complete(tiny_features,
                                                                              tmp_path):
    """Before: a fresh train deleted the old checkpoint at its start, so a stop (or a kill)
    left no model, and the old thresholds.json stayed beside the new weights."""
    run = tmp_path / "runs" / "r"
    prep = prepare(_cfg(tiny_features, tmp_path / "runs"))
    train_one(_cfg(tiny_features, tmp_path / "runs", run_name="r"), "bce", prep)
    old_sha = sha256_file(run / "checkpoint.safetensors")
    _eval_files(run, old_sha)
    old_metrics = (run / "metrics.jsonl").read_text()

    # a retrain with another config, stopped after 2 of 4 epochs (as a kill would)
    other = dict(run_name="r", lr=5e-3)
    res = train_one(_cfg(tiny_features, tmp_path / "runs", stop_after_epoch=2, **other), "bce",
                    prep)
    assert not res["finished"]
    assert sha256_file(run / "checkpoint.safetensors") == old_sha  # the old model is intact
    assert (run / "metrics.jsonl").read_text() == old_metrics
    assert (run / "thresholds.json").is_file()
    load_run(run)  # and still loads
    new = tmp_path / "runs" / ".r.new"
    assert (new / "last.safetensors").is_file() and not (new / "checkpoint.safetensors").exists()

    # resume=true continues the retrain where it stopped, then swaps it in
    res = train_one(_cfg(tiny_features, tmp_path / "runs", resume=True, **other), "bce", prep)
    assert res["finished"] and res["run_dir"] == str(run)
    assert sha256_file(run / "checkpoint.safetensors") != old_sha
    assert json.loads((run / "config.json").read_text())["config"]["lr"] == 5e-3
    assert [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2, 3, 4]
    # eval's files went with the old checkpoint they were computed for
    assert not (run / "thresholds.json").exists() and not (run / "metrics.json").exists()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".r.lock", "r"]


def test_a_fresh_retrain_drops_a_stopped_one_and_the_swap_is_mended(tiny_features, tmp_path):
    runs = tmp_path / "runs"
    prep = prepare(_cfg(tiny_features, runs))
    train_one(_cfg(tiny_features, runs, run_name="r"), "bce", prep)
    train_one(_cfg(tiny_features, runs, run_name="r", lr=5e-3, stop_after_epoch=1), "bce", prep)
    assert (runs / ".r.new").is_dir()
    # resume=false (train's default): start over; the stopped retrain goes, a complete one
    # replaces the run
    train_one(_cfg(tiny_features, runs, run_name="r", lr=2e-3), "bce", prep)
    assert not (runs / ".r.new").exists()
    assert json.loads((runs / "r" / "config.json").read_text())["config"]["lr"] == 2e-3

    # A kill between the swap's two renames: the run is away as .r.old, the new one complete
    # in .r.new. The next train puts the new one in place before anything else.
    os.rename(runs / "r", runs / ".r.new")
    (runs / ".r.old").mkdir()
    train_one(_cfg(tiny_features, runs, run_name="r", lr=2e-3, resume=True), "bce", prep)
    assert sorted(p.name for p in runs.iterdir()) == [".r.lock", "r"]
    assert json.loads((runs / "r" / "config.json").read_text())["config"]["lr"] == 2e-3


def test_a_second_train_on_a_run_refuses_naming_the_run_and_the_pid(tiny_features, tmp_path,
                                                                   capsys):
    """Before: no lock; two trains mixed their epochs in one metrics.jsonl."""
    from pipeline.cli import main

    runs = tmp_path / "runs"
    fd = take_lock(runs / ".r.lock", "held by the test")  # what a running train holds
    try:
        rc = main(["train", f"features_dir={tiny_features}", f"runs_dir={runs}",
                   f"dataset={DATASET}", f"backbone={BACKBONE}", "segments=4", "models=bce",
                   "run_name=r", "epochs=1", "device=cpu"])
    finally:
        release(fd)
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if " ERROR " in ln]
    assert rc == 1 and len(errors) == 1, err[-2000:]
    assert f"run {runs / 'r'}: another 'cprclip train' (pid {os.getpid()})" in errors[0]
    assert "Traceback" not in err
    assert not (runs / "r").exists()  # refused before anything was written


def test_resume_does_not_care_how_runs_dir_is_spelt(tiny_features, tmp_path, monkeypatch):
    """Before: "runs/" and an absolute path "differed" from "runs" (resume=true refused)."""
    monkeypatch.chdir(tmp_path)
    prep = prepare(_cfg(tiny_features, "runs"))
    train_one(_cfg(tiny_features, "runs/", run_name="r", stop_after_epoch=2), "bce", prep)
    res = train_one(_cfg(tiny_features, str(tmp_path / "runs"), run_name="r", resume=True),
                    "bce", prep)
    assert res["finished"] and res["epochs"] == 4
    rows = [json.loads(ln) for ln in (tmp_path / "runs" / "r" / "metrics.jsonl").read_text()
            .splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    # features_dir spelt relative: the same files (their sha256 is in the identity), so resume
    train_one(_cfg(tiny_features, "runs", run_name="s", stop_after_epoch=1), "bce", prep)
    rel = os.path.relpath(tiny_features, tmp_path) + "/"
    assert train_one(_cfg(rel, "runs", run_name="s", resume=True), "bce", prep)["finished"]


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", ".hidden", "a/b", ""])
def test_run_name_must_be_one_folder_inside_runs_dir(name, tmp_path):
    if not name:  # "" means runs/<model>/: allowed
        assert load_stage_config(TrainConfig, "train", None, ["models=bce", "run_name="])
        return
    with pytest.raises(ConfigError, match="key 'run_name'"):
        load_stage_config(TrainConfig, "train", None, ["models=bce", f"run_name={name}"])


@pytest.mark.parametrize("key,value,words", [
    ("seed", str(2**64), "key 'seed'"), ("seed", "-1", "key 'seed'"),
    ("dataset", "", "key 'dataset'"), ("dataset", "../x", "key 'dataset'")])
def test_seed_and_dataset_are_checked(key, value, words):
    with pytest.raises(ConfigError, match=words):
        load_stage_config(TrainConfig, "train", None, [f"{key}={value}"])


def _manifest(path: Path, features: Path, edit) -> Path:
    """A manifest of the rows of the tiny feature file (each video its own take), edited."""
    fs = read_features(feature_path(features, DATASET, BACKBONE, "rgb", 4))
    rows = []
    for i, vid in enumerate(fs.video_id.tolist()):
        labels = ";".join(str(c) for c in np.flatnonzero(fs.labels[i]))
        rows.append({"video_id": vid, "path": f"videos/{vid}.mp4", "take_id": vid, "view": 1,
                     "participant": fs.participant[i], "split": fs.split[i], "labels": labels})
    rows = edit(rows)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_train_follows_the_manifest_without_re_extracting(tiny_features, tmp_path):
    """Before: train read only the HDF5, so a corrected label or a removed row in the manifest
    never reached training until extract was rerun."""
    train_ids = [v for v, s in zip(*(lambda fs: (fs.video_id.tolist(), fs.split.tolist()))(
        read_features(feature_path(tiny_features, DATASET, BACKBONE, "rgb", 4)))) if s == "train"]
    relabel, removed = train_ids[0], train_ids[1]  # both class 0 singles

    def edit(rows):
        for r in rows:
            if r["video_id"] == relabel:
                r["labels"] = "5"
        return [r for r in rows if r["video_id"] != removed]

    m = _manifest(tmp_path / "manifest.csv", tiny_features, edit)
    prep = prepare(_cfg(tiny_features, tmp_path / "runs", manifest=str(m)))
    ids = prep.train.video_id.tolist()
    assert removed not in ids
    assert int(np.flatnonzero(prep.train.labels[ids.index(relabel)])[0]) == 5
    assert prep.manifest == {"path": str(m.resolve()), "sha256": sha256_file(m)}
    # without a manifest: the rows as stored
    stored = prepare(_cfg(tiny_features, tmp_path / "runs"))
    assert removed in stored.train.video_id.tolist() and stored.manifest is None
    assert stored.train.labels.shape[1] == NUM_CLASSES

    # the run records the manifest, and a later change of it is a different run for resume
    cfg = _cfg(tiny_features, tmp_path / "runs", manifest=str(m), run_name="r",
               stop_after_epoch=1)
    train_one(cfg, "bce", prep)
    assert json.loads((tmp_path / "runs" / "r" / "config.json").read_text())["manifest"] == \
        prep.manifest
    _manifest(m, tiny_features, lambda rows: rows)  # the correction undone
    again = _cfg(tiny_features, tmp_path / "runs", manifest=str(m), run_name="r", resume=True)
    with pytest.raises(ValueError, match="manifest"):
        train_one(again, "bce", prepare(again))
