"""The training loop on tiny feature files: learning, resume, the real CLI, load_run."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipeline.config import ConfigError, load_stage_config
from pipeline.features import join, read_features
from train.config import MODELS, TrainConfig
from train.loop import prepare, train_one
from train.runs import load_run

from tiny_train_features import BACKBONE, DATASET


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("text_cache")


def _cfg(features, runs, cache, **kw):
    base = dict(dataset=DATASET, backbone=BACKBONE, segments=4, features_dir=str(features),
                runs_dir=str(runs), text_encoder="test_hash", text_cache_dir=str(cache),
                epochs=6, batch_size=32, imagine_per_epoch=64, val_every=2, hidden_dim=32)
    base.update(kw)
    return TrainConfig(**base)


def _metrics(run_dir):
    return [json.loads(ln) for ln in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases(tiny_features, tmp_path, text_cache):
    cfg = _cfg(tiny_features, tmp_path, text_cache, models=("cpr_clip_plus",), epochs=15, lr=5e-3,
               imagine_per_epoch=128)
    res = train_one(cfg, "cpr_clip_plus", prepare(cfg))
    rows = _metrics(res["run_dir"])
    first, last = rows[0]["train/loss"], rows[-1]["train/loss"]
    assert last < 0.75 * first, (first, last)
    assert rows[-1]["train/loss_clip"] < rows[0]["train/loss_clip"]
    assert res["val/mAP_bce"] > 0.5 and res["val/mAP_clip"] > 0.5  # chance is about 1/14
    assert any(p.name.startswith("events") for p in (Path(res["run_dir"]) / "tensorboard").iterdir())


def test_resume_gives_same_weights(tiny_features, tmp_path, text_cache):
    kw = dict(models=("cpr_clip_plus",), epochs=5, dropout=0.3, pooling="attention")
    full = _cfg(tiny_features, tmp_path, text_cache, run_name="full", **kw)
    prep = prepare(full)
    train_one(full, "cpr_clip_plus", prep)
    part = _cfg(tiny_features, tmp_path, text_cache, run_name="part", stop_after_epoch=3, **kw)
    r = train_one(part, "cpr_clip_plus", prep)
    assert not r["finished"] and not (tmp_path / "part" / "checkpoint.safetensors").exists()
    with pytest.raises(ValueError, match="not finished"):
        load_run(tmp_path / "part")
    resumed = _cfg(tiny_features, tmp_path, text_cache, run_name="part", resume=True, **kw)
    assert train_one(resumed, "cpr_clip_plus", prep)["finished"]
    a = load_file(str(tmp_path / "full" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma, mb = _metrics(tmp_path / "full"), _metrics(tmp_path / "part")
    assert [m["epoch"] for m in mb] == [1, 2, 3, 4, 5]
    assert [m["train/loss"] for m in ma] == [m["train/loss"] for m in mb]
    # a changed config cannot silently continue an old run
    other = _cfg(tiny_features, tmp_path, text_cache, run_name="part", resume=True,
                 **{**kw, "dropout": 0.1})
    with pytest.raises(ValueError, match="dropout"):
        train_one(other, "cpr_clip_plus", prep)


def test_cli_trains_all_four_models(tiny_features, tmp_path, text_cache):
    from pipeline.cli import main

    toml = tmp_path / "tiny.toml"
    toml.write_text(f"""
[common]
dataset = "{DATASET}"
features_dir = "{tiny_features}"
runs_dir = "{tmp_path / 'runs'}"
seed = 0

[train]
backbone = "{BACKBONE}"
segments = 4
text_encoder = "test_hash"
text_cache_dir = "{text_cache}"
epochs = 3
imagine_per_epoch = 32
hidden_dim = 16
""")
    assert main(["train", "--config", str(toml), "fusion=late", "score_composite_prompts=true"]) == 0
    rgb = read_features(tiny_features / DATASET / f"{BACKBONE}-rgb-4seg.h5")
    flow = read_features(tiny_features / DATASET / f"{BACKBONE}-flow-4seg.h5")
    rgb, flow = join(rgb, flow)
    test = rgb.split == "test"
    feats = {"rgb": rgb.features[test], "flow": flow.features[test]}
    n = int(test.sum())
    for name, spec in MODELS.items():
        run = load_run(tmp_path / "runs" / name)
        assert run.model_name == name and run.name == name
        assert (run.has_clip, run.has_bce) == (spec.clip, spec.bce)
        assert set(run.feature_files) == {"rgb", "flow"} and run.feature_files["rgb"] == rgb.path
        assert run.feature_attrs["flow"]["init"] == "random"
        assert len(run.feature_attrs["rgb"]["sha256"]) == 64
        assert run.config["fusion"] == "late"
        assert run.text_encoder.startswith("test_hash") == spec.clip
        s = run.scores(feats)
        want = ({"clip", "clip_sets"} if spec.clip else set()) | ({"bce"} if spec.bce else set())
        assert set(s) == want, name
        for v in s.values():
            assert v.shape == (n, 14) and v.dtype == np.float32 and np.isfinite(v).all()
        if spec.bce:
            assert ((s["bce"] >= 0) & (s["bce"] <= 1)).all()
        if spec.clip:
            np.testing.assert_allclose(s["clip_sets"].sum(axis=1) <= 4.0 + 1e-4, True)
        record = json.loads((tmp_path / "runs" / name / "config.json").read_text())
        assert record["finished"] and record["features"]["rgb"]["attrs"]["backbone"] == BACKBONE
        if spec.clip:
            assert record["text_encoder"]["random_init"] is True
            assert len(record["prompts"]["test"]) == 14
    # the run scores the val rows exactly as validation did during training (input stats saved)
    run = load_run(tmp_path / "runs" / "imaginenet_fc")
    val = rgb.split == "val"
    got = run.scores({"rgb": rgb.features[val], "flow": flow.features[val]})["bce"]
    from train.loop import mean_ap
    assert mean_ap(got, rgb.labels[val]) == pytest.approx(run.record["final_val"]["val/mAP"], abs=1e-6)
    with pytest.raises(KeyError, match="flow"):
        load_run(tmp_path / "runs" / "bce").scores({"rgb": feats["rgb"]})


def test_config_errors_name_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="cpr_clip_plus"):
        load_stage_config(TrainConfig, "train", None, ["models=clip"])
    with pytest.raises(ConfigError, match="run_name"):
        load_stage_config(TrainConfig, "train", None, ["run_name=x"])
    with pytest.raises(ConfigError, match="prompt_kinds"):
        load_stage_config(TrainConfig, "train", None, ["prompt_kinds=colour"])
    cfg = load_stage_config(TrainConfig, "train", None, ["models=cpr_clip_plus", "backbone=tsm_r50"])
    assert cfg.models == ("cpr_clip_plus",) and cfg.backbone == "tsm_r50"


def test_missing_feature_file_is_reported(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["train", "--config", "configs/synthetic.toml", f"features_dir={tmp_path}",
                 f"runs_dir={tmp_path}"]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    # one line that names the file train looked for (the first modality's) and says why
    cfg = load_stage_config(TrainConfig, "train", "configs/synthetic.toml")
    want = tmp_path / "synthetic" / f"{cfg.backbones['rgb']}-rgb-{cfg.segments}seg.h5"
    assert len(errors) == 1 and f"{want}: feature file not found" in errors[0], err
    assert "Traceback" not in err


def test_resume_auto_follows_the_shared_run_convention(tiny_features, tmp_path, text_cache, caplog):
    """resume="auto" (pipeline/runs.py): continue the same run, drop a half-written metrics
    line, start over for another config; the machine's choices are recorded."""
    import logging

    kw = dict(models=("bce",), epochs=4, val_every=1, dropout=0.3)
    prep = prepare(_cfg(tiny_features, tmp_path, text_cache, **kw))
    train_one(_cfg(tiny_features, tmp_path, text_cache, run_name="full", **kw), "bce", prep)
    run = tmp_path / "part"
    train_one(_cfg(tiny_features, tmp_path, text_cache, run_name="part", stop_after_epoch=2, **kw),
              "bce", prep)
    with (run / "metrics.jsonl").open("a") as f:  # killed mid-write
        f.write('{"epoch": 3, "train/lo')
    with caplog.at_level(logging.INFO):
        res = train_one(_cfg(tiny_features, tmp_path, text_cache, run_name="part",
                             resume="auto", **kw), "bce", prep)
    assert res["finished"] and f"{run}: resuming after epoch 2 of 4" in caplog.text
    assert [m["epoch"] for m in _metrics(run)] == [1, 2, 3, 4]
    a = load_file(str(tmp_path / "full" / "checkpoint.safetensors"))
    b = load_file(str(run / "checkpoint.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((run / "config.json").read_text())
    assert record["runtime"]["torch_threads"] == 1 and record["runtime"]["precision"] == "fp32"

    caplog.clear()
    with caplog.at_level(logging.WARNING):  # another config: auto starts over, and says why
        train_one(_cfg(tiny_features, tmp_path, text_cache, run_name="part", resume="auto",
                       **{**kw, "lr": 5e-3}), "bce", prep)
    assert "config.lr" in caplog.text and "starting over" in caplog.text
    assert [m["epoch"] for m in _metrics(run)] == [1, 2, 3, 4]
    assert _metrics(run)[0]["train/loss"] != _metrics(tmp_path / "full")[0]["train/loss"] or \
        _metrics(run)[-1]["train/loss"] != _metrics(tmp_path / "full")[-1]["train/loss"]


def test_num_threads_auto_and_zero(monkeypatch, tmp_path):
    """auto: every usable CPU (a head on features has no decoders beside it); 0: torch's own
    default, untouched, as before "auto" existed; N: N."""
    import pipeline.runtime as rt
    from train import loop

    class Stop(Exception):
        pass

    def stop(cfg, device):  # the threads are set before the features are read
        raise Stop

    calls = []
    monkeypatch.setattr(loop, "prepare", stop)
    monkeypatch.setattr(rt, "usable_cpus", lambda: 3)
    for value, want in (("auto", 3), (2, 2), (0, None)):
        torch.set_num_threads(1)
        with pytest.raises(Stop):
            loop.train_all(TrainConfig(num_threads=value, device="cpu", runs_dir=str(tmp_path)))
        calls.append(torch.get_num_threads())
        assert want is None or calls[-1] == want, (value, calls)
    assert calls[-1] == 1  # 0 left torch's setting alone
