"""The real ``cprclip finetune`` CLI on tiny generated videos: outputs, loading, no-op rerun."""
from __future__ import annotations

import json

import numpy as np
import torch

from pipeline.cli import main

TINY = ["backbone=tsn_r18", "init_checkpoint=none", "segments=4", "short_side=48", "crop_size=32", "epochs=2",
        "batch_size=4", "lr=0.01", "workers=0", "warmup_epochs=0", "val_every=1"]


def _ckpt(root, modality):
    from pipeline.features import finetuned_checkpoint_path

    return finetuned_checkpoint_path(root, "synthetic", "tsn_r18", modality)  # [common] dataset


def test_cli_trains_both_streams_and_extract_loads_the_checkpoints(tiny_manifest, tmp_path):
    from extract.backbones import build_recognizer, load_weights
    from finetune.weights import read_checkpoint_meta
    from pipeline.provenance import sha256_file

    runs = tmp_path / "finetuned"
    args = ["finetune", "--config", "configs/synthetic.toml", f"manifest={tiny_manifest}",
            f"finetune_dir={runs}", "modalities=rgb,flow", "flow_init=rgb", *TINY, "flow_epochs=1"]
    assert main(args) == 0
    for modality in ("rgb", "flow"):
        ckpt = _ckpt(runs, modality)
        assert ckpt.parent == runs / "synthetic" / f"tsn_r18-{modality}"
        assert ckpt.is_file()
        model = build_recognizer("tsn_r18", modality, num_segments=4, seed=123)
        fresh = {k: v.clone() for k, v in model.state_dict().items()}
        assert load_weights(model, ckpt) == sha256_file(ckpt)
        # the keys are exactly the recognizer's, and the weights are the trained ones
        from safetensors.torch import load_file

        saved = load_file(str(ckpt))
        assert set(saved) == set(fresh)
        changed = [k for k in saved if not torch.equal(saved[k], fresh[k])]
        assert "backbone.conv1.conv.weight" in changed
        torch.testing.assert_close(model.state_dict()["cls_head.fc_cls.weight"],
                                   saved["cls_head.fc_cls.weight"])
        meta = read_checkpoint_meta(ckpt)
        assert meta["backbone"] == "tsn_r18" and meta["modality"] == modality
        assert meta["manifest_sha256"] == sha256_file(tiny_manifest)
        assert json.loads(meta["config"])["crop_size"] == 32
        # the machine's choices, resolved and recorded: "auto" is kept as the config said
        runtime = json.loads(meta["runtime"])
        assert json.loads(meta["config"])["cpu_amp"] == "auto"
        assert runtime["precision"] in ("bf16", "fp32") and runtime["torch_threads"] >= 1
        assert runtime == json.loads((ckpt.parent / "config.json").read_text())["runtime"]
        run = ckpt.parent
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        epochs = 2 if modality == "rgb" else 1  # flow_epochs=1 shortens the flow stream only
        assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
        assert all(np.isfinite(r["train/loss"]) and 0 <= r["val/top1"] <= 1 for r in rows)
        assert (run / "confusion.png").stat().st_size > 1000
        cm = np.array(json.loads((run / "confusion.json").read_text())["matrix"])
        assert cm.shape == (14, 14) and cm.sum() == 4  # the 4 val videos
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
        state = torch.load(run / "state.pt", weights_only=True)
        assert state["epoch"] == epochs
    # flow started from the RGB stream (cross-modality init), recorded in its metadata
    flow_meta = read_checkpoint_meta(_ckpt(runs, "flow"))
    assert flow_meta["init_sha256"] == sha256_file(_ckpt(runs, "rgb"))

    # A second run with the same config and manifest does nothing.
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/checkpoint.safetensors")}
    assert len(stamps) == 2
    assert main(args) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


def test_cli_reports_bad_config_and_missing_init(tiny_manifest, tmp_path):
    base = ["finetune", "--config", "configs/synthetic.toml", f"manifest={tiny_manifest}",
            f"finetune_dir={tmp_path}", *TINY]
    assert main(base + ["modalities=depth"]) == 2
    assert main(base + ["modalities=rgb", f"init_checkpoint={tmp_path / 'nope.pth'}"]) == 2
    assert not (tmp_path / "synthetic").exists()


def test_runs_dir_no_longer_places_finetuning(tiny_manifest, tmp_path, capsys):
    """The old key fails with a line naming the new one instead of silently writing elsewhere."""
    rc = main(["finetune", "--config", "configs/synthetic.toml", f"manifest={tiny_manifest}",
               f"runs_dir={tmp_path}", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "runs_dir" in err and "finetune_dir" in err, err
    assert not list(tmp_path.iterdir())
