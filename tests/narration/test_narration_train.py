"""``cprclip train task=narration`` on a tiny generated dataset: the loss falls, zero-shot
recognition works where it must, the run folder follows the convention, an interrupted run
resumes to the same weights, and 2 gloo processes train the weights of 1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from narration.config import NarrationConfig
from narration.train import LAST, MODEL, train_narration
from narration_helpers import overrides
from pipeline.cli import main as cli_main
from pipeline.config import ConfigError, load_stage_config
from pipeline.runs import ResumeError, read_metrics

ROOT = Path(__file__).resolve().parents[2]
FAST = dict(epochs=12, batch_size=8, hidden=32, val_every=4, dropout=0.0)


def _cfg(tiny, runs: Path, **kw) -> NarrationConfig:
    return load_stage_config(NarrationConfig, "narration", None,
                             overrides({**tiny, "runs_dir": str(runs)}, **{**FAST, **kw}))


def test_loss_falls_and_toy_zero_shot_succeeds(tiny, tmp_path):
    r = train_narration(_cfg(tiny, tmp_path, epochs=40))
    rows = read_metrics(tmp_path / "narration" / "metrics.jsonl")
    assert [x["epoch"] for x in rows] == list(range(1, 41))
    assert rows[-1]["train/loss"] < 0.6 * rows[0]["train/loss"]
    assert {"train/loss_clip", "train/loss_take", "train/loss_session"} <= set(rows[0])
    # the toy narrations name each class with its prompt's words: held-out people's videos
    # must be recognised far above chance (1/14)
    assert r["figures"]["val"]["top1"] >= 0.75
    assert r["figures"]["test"]["mAP"] > 0.6
    run = tmp_path / "narration"
    record = json.loads((run / "config.json").read_text())
    assert record["task"] == "narration" and record["finished"] and record["label_free"]
    assert record["class_labels_used"] is False
    assert record["participants"]["train"] == ["p1", "p2"] and record["participants"]["val"] == ["p3"]
    assert json.loads((run / "zeroshot.json").read_text())["val"]["top1"] == r["figures"]["val"]["top1"]
    assert "text.class_prompts" in load_file(str(run / MODEL))
    assert not list(run.glob("checkpoint*.safetensors"))  # cprclip eval passes the run by
    assert list((run / "tensorboard").iterdir())


def test_training_never_reads_the_labels(tiny, tmp_path, monkeypatch):
    """Shuffled labels change the zero-shot figures, never the weights."""
    import narration.data as data

    real = data.load_corpus
    a = train_narration(_cfg(tiny, tmp_path / "a", epochs=3))

    def shuffled(cfg):
        c = real(cfg)
        c.rows.labels = c.rows.labels[::-1].copy()
        return c

    monkeypatch.setattr("narration.train.load_corpus", shuffled)
    b = train_narration(_cfg(tiny, tmp_path / "b", epochs=3))
    wa = load_file(str(tmp_path / "a" / "narration" / MODEL))
    wb = load_file(str(tmp_path / "b" / "narration" / MODEL))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["figures"]["val"] != b["figures"]["val"]


def test_resume_after_interruption_gives_the_same_weights(tiny, tmp_path):
    train_narration(_cfg(tiny, tmp_path / "whole"))
    stopped = train_narration(_cfg(tiny, tmp_path / "cut", stop_after_epoch=5))
    assert not stopped["finished"] and not (tmp_path / "cut" / "narration" / MODEL).exists()
    # a half-written metrics line, as a kill mid-write leaves it
    with open(tmp_path / "cut" / "narration" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 6, "train/lo')
    train_narration(_cfg(tiny, tmp_path / "cut", resume=True))
    a = load_file(str(tmp_path / "whole" / "narration" / MODEL))
    b = load_file(str(tmp_path / "cut" / "narration" / MODEL))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    rows = read_metrics(tmp_path / "cut" / "narration" / "metrics.jsonl")
    assert [x["epoch"] for x in rows] == list(range(1, FAST["epochs"] + 1))
    # another config cannot continue that state
    with pytest.raises(ResumeError, match="config.lr"):
        train_narration(_cfg(tiny, tmp_path / "cut", resume=True, lr=0.5))


def test_two_gloo_processes_match_one_process(tiny, tmp_path):
    keys = overrides({**tiny, "runs_dir": str(tmp_path / "ddp")}, **FAST)
    env = dict(os.environ, OMP_NUM_THREADS="1", CPRCLIP_NO_PROGRESS="1",
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "pipeline", "train", "task=narration", *keys]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 process(es)" in p.stderr
    train_narration(_cfg(tiny, tmp_path / "one"))
    a = load_file(str(tmp_path / "one" / "narration" / MODEL))
    b = load_file(str(tmp_path / "ddp" / "narration" / MODEL))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    init = load_file(str(tmp_path / "one" / "narration" / LAST))
    assert not torch.equal(a["model.net.0.weight"], torch.zeros_like(init["model.net.0.weight"]))
    ra = read_metrics(tmp_path / "one" / "narration" / "metrics.jsonl")
    rb = read_metrics(tmp_path / "ddp" / "narration" / "metrics.jsonl")
    assert rb[-1]["train/loss"] == pytest.approx(ra[-1]["train/loss"], rel=1e-4)
    assert rb[0]["train/loss"] > rb[-1]["train/loss"]  # it trained


def test_cli_prints_the_table_and_rejects_unknown_keys(tiny, tmp_path, capsys):
    rc = cli_main(["train", "task=narration", *overrides({**tiny, "runs_dir": str(tmp_path)},
                                                         **{**FAST, "epochs": 2})])
    out = capsys.readouterr().out
    assert rc == 0 and "held-out singles (val): top-1 per video" in out and "label-free" in out
    with pytest.raises(ConfigError, match="valid keys are"):
        load_stage_config(NarrationConfig, "narration", None, ["epoch=3"])
    with pytest.raises(ConfigError, match="modalities"):
        load_stage_config(NarrationConfig, "narration", None, ["modalities=rgb,depth"])


def test_streams_from_fine_tuned_backbones_count_as_labelled():
    from narration.data import saw_class_labels

    assert not saw_class_labels({"backbone": "x", "modality": "rgb", "segments": 8,
                                 "init": "random", "checkpoint_sha256": "random-init"})
    shipped = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"  # ImageNet MNV2
    assert not saw_class_labels({"backbone": "tsn_mnv2", "modality": "rgb", "segments": 8,
                                 "init": "checkpoint", "checkpoint_sha256": shipped})
    assert saw_class_labels({"backbone": "tsn_mnv2", "modality": "flow", "segments": 8,
                             "init": "checkpoint", "checkpoint_sha256": "d336" + "0" * 60,
                             "checkpoint_path": "finetuned/synthetic/tsn_mnv2-flow/checkpoint.safetensors"})


def test_view_standardise_is_fitted_on_training_videos_and_saved(tiny, tmp_path):
    """``view_standardise``: the stream standardised per camera with the training people's
    statistics (train/viewnorm.py); they travel in model.safetensors and config.json."""
    import numpy as np

    from narration.data import load_corpus
    from train.viewnorm import ViewNorm

    cfg = _cfg(tiny, tmp_path, view_standardise="rgb")
    corpus = load_corpus(cfg)
    rows = corpus.rows
    assert corpus.viewnorm.modalities == ("rgb",)
    for v in np.unique(rows.view):  # the training rows of each camera: mean 0, sd 1
        x = rows.features[(rows.split == "train") & (rows.view == v)].reshape(-1, rows.features.shape[-1])
        np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-3)
    train_narration(cfg)
    run = tmp_path / "narration"
    saved = ViewNorm.from_tensors(load_file(str(run / MODEL)))
    assert saved.modalities == ("rgb",)
    record = json.loads((run / "config.json").read_text())
    assert record["view_standardise"] == {"rgb": {"views": [1, 2]}}
    # a stream that is not among the modalities is skipped
    assert not load_corpus(_cfg(tiny, tmp_path, view_standardise="skeleton")).viewnorm
