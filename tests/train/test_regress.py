"""``cprclip train task=regress`` and ``cprclip eval task=regress`` on tiny generated data:
feature files whose segments carry the take's rate and depth (plus noise), and a manifest
with the two columns. The real CLI trains, its logged loss falls, and eval measures the
held-out takes better than guessing the training mean; few-shot runs keep K videos per bin."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.features import ShardWriter, consolidate, feature_path
from pipeline.manifest import VideoRecord, load_manifest, write_manifest
from pipeline.runs import read_metrics
from pipeline.taxonomy import multi_hot

SEGMENTS, DIMS = 4, {"rgb": 12, "flow": 6}


def make_dataset(root: Path, seed: int = 0) -> Path:
    """Takes of 2 views: 3 training people x 16 takes, 1 val and 1 test person x 8 takes.
    Rate 55-125 and depth 1.5-10.5 uniformly; each segment's features are a fixed random mix
    of (rate, depth, the press phase at the segment's time: segments 0.4 s apart, as in the
    demo) plus noise, so the rate also shows in how the segments repeat. Returns the config."""
    rng = np.random.default_rng(seed)
    mix = {m: rng.standard_normal((3, d)) for m, d in DIMS.items()}
    records, rows = [], []
    manifest = root / "data" / "tiny" / "manifest.csv"
    plan = [("train", f"p{p}") for p in (1, 2, 3) for _ in range(16)]
    plan += [("val", "p5")] * 8 + [("test", "p6")] * 8
    for t, (split, person) in enumerate(plan):
        rate, depth = float(rng.uniform(55, 125)), float(rng.uniform(1.5, 10.5))
        for view in (1, 2):
            vid = f"t{t:03d}_v{view}"
            records.append(VideoRecord(vid, manifest.parent / "videos" / f"{vid}.mp4", f"t{t:03d}", view,
                                       person, split, (0,), rate=round(rate, 3),
                                       depth=round(depth, 3)))
            phase = rate / 60 * 0.4 * np.arange(SEGMENTS) + rng.uniform(0, 1)  # in presses
            z = np.stack([np.full(SEGMENTS, (rate - 90) / 20), np.full(SEGMENTS, (depth - 6) / 3),
                          2 * np.sin(2 * np.pi * phase)], 1)  # (T, 3)
            rows.append((vid, f"t{t:03d}", view, person, split, z))
    manifest.parent.mkdir(parents=True)
    write_manifest(manifest, records)
    for m, d in DIMS.items():
        path = feature_path(root / "features", "tiny", "toy", m, SEGMENTS)
        w = ShardWriter(path, {"backbone": "toy", "modality": m, "segments": SEGMENTS,
                               "checkpoint_sha256": "0" * 64, "init": "random"})
        for vid, take, view, person, split, z in rows:
            x = z @ mix[m] + 0.3 * rng.standard_normal((SEGMENTS, d))
            w.add(vid, take, view, person, split, multi_hot((0,)), x.astype(np.float32))
        w.close()
        consolidate(path)
    cfg = root / "tiny.toml"
    cfg.write_text(f"""
[common]
dataset = "tiny"
manifest = "{manifest}"
features_dir = "{root / 'features'}"
runs_dir = "{root / 'runs'}"

[train]
backbone = "toy"
segments = {SEGMENTS}
modalities = ["rgb", "flow"]
text_encoder = "test_hash"

[regress]
steps = 100
log_every = 20
hidden_dim = 32
lr = 0.01
use_pooled = true
report_dir = "{root / 'report'}"
""")
    return cfg


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("regress"))


def _mean_guess_mae(manifest: Path, target: str) -> float:
    recs = load_manifest(manifest, check_files=False)
    train = np.array([getattr(r, target) for r in recs if r.split == "train"])
    held = np.array([getattr(r, target) for r in recs if r.split != "train"])
    return float(np.abs(held - train.mean()).mean())


@pytest.mark.parametrize("target, extra, gain", [
    ("rate", [], 0.6),
    # the segments' self-similarity alone: 8 segments 0.4 s apart alias some rates onto others
    ("rate", ["use_pooled=false", "run_name=rate_ssm"], 0.8),
    ("depth", ["method=plain", "pooling=mean", "run_name=plain_depth"], 0.6),
    ("depth", ["context=shared", "decode=hard", "run_name=coop_depth"], 0.6),
])
def test_train_and_eval_regress(tiny, target, extra, gain, capsys):
    root = tiny.parent
    rc = cli(["train", "--config", str(tiny), "task=regress", f"target={target}", *extra])
    assert rc == 0
    name = next((e.split("=")[1] for e in extra if e.startswith("run_name=")), f"regress_{target}")
    run = root / "runs" / name
    record = json.loads((run / "config.json").read_text())
    assert record["task"] == "regress" and record["target"] == target
    assert not (run / "checkpoint.safetensors").exists()  # never mistaken for an error model
    losses = [r["train/loss"] for r in read_metrics(run / "metrics.jsonl")]
    assert len(losses) == 5 and losses[-1] < gain * losses[0], losses

    rc = cli(["eval", "--config", str(tiny), "task=regress", f"runs={name}"])
    assert rc == 0
    m = json.loads((run / "metrics.json").read_text())
    mae = m["splits"]["held_out"]["take"]["mae"]
    guess = _mean_guess_mae(root / "data" / "tiny" / "manifest.csv", target)
    assert mae < gain * guess, (mae, guess)
    assert set(m["splits"]) == {"val", "test", "held_out"}
    assert (root / "report" / "regress.md").is_file()
    assert (root / "report" / "regress_scatter.png").read_bytes()[:4] == b"\x89PNG"
    assert name in capsys.readouterr().out


def test_fewshot_runs_keep_k_per_bin(tiny):
    from train.regress import DEFAULT_EDGES
    from train.regress_model import bin_index

    root = tiny.parent
    rows = {}
    for seed in (0, 1):
        assert cli(["train", "--config", str(tiny), "task=regress", "target=rate", "shots=2",
                    f"seed={seed}", f"run_name=few{seed}", "steps=20"]) == 0
        rows[seed] = json.loads((root / "runs" / f"few{seed}" / "config.json").read_text())
    recs = {r.video_id: r for r in load_manifest(root / "data/tiny/manifest.csv",
                                                 check_files=False)}
    for seed, rec in rows.items():
        ids = rec["data"]["train_video_ids"]
        assert all(recs[v].split == "train" for v in ids)
        counts = np.bincount(bin_index(np.array([recs[v].rate for v in ids]),
                                       np.array(DEFAULT_EDGES["rate"])), minlength=8)
        assert counts.max() <= 2 and rec["bins"]["train_counts"] == counts.tolist()
    assert rows[0]["data"]["train_video_ids"] != rows[1]["data"]["train_video_ids"]


def test_regress_errors_are_one_line(tiny, tmp_path, capsys):
    def err() -> str:
        text = capsys.readouterr().err
        assert "Traceback" not in text
        return text

    # a manifest without the column
    recs = load_manifest(tiny.parent / "data/tiny/manifest.csv", check_files=False)
    bare = tmp_path / "tiny" / "manifest.csv"
    bare.parent.mkdir()
    from dataclasses import replace

    write_manifest(bare, [replace(r, rate=None) for r in recs])
    assert cli(["train", "--config", str(tiny), "task=regress", f"manifest={bare}"]) == 1
    assert "'rate' column is empty in every row" in err()
    assert cli(["train", "--config", str(tiny), "task=regress", "bin_edges=1,3,2"]) == 2
    text = err()
    assert "[regress] key 'bin_edges'" in text and "must increase" in text
    assert cli(["train", "--config", str(tiny), "task=regress", "target=speed"]) == 2
    assert "'speed' is not one of 'rate', 'depth'" in err()
    assert cli(["eval", "--config", str(tiny), "task=regress", "runs=nope"]) == 1
    assert "no regression run" in err()


def test_scale_features_are_fused(tiny, tmp_path):
    """EchoZoom-style inputs: a second feature folder (other crops) is concatenated per segment;
    the run records each file in D order, and a folder that lacks videos is a one-line error."""
    import shutil

    from train.regress import load_config, load_regress_rows

    root = tiny.parent
    other = tmp_path / "features_zoom"
    shutil.copytree(root / "features", other)
    cfg = load_config(str(tiny), [f"scale_features_dirs={other}"])
    rows = load_regress_rows(cfg)
    assert rows.features.shape[-1] == 2 * sum(DIMS.values())
    assert rows.blocks == (12, 6, 12, 6)
    assert [s["features_dir"] for s in rows.sources] == [str(root / "features")] * 2 + [str(other)] * 2
    assert cli(["train", "--config", str(tiny), "task=regress", f"scale_features_dirs={other}",
                "run_name=zoom", "steps=10"]) == 0
    record = json.loads((root / "runs" / "zoom" / "config.json").read_text())
    assert [s["dim"] for s in record["features"]] == [12, 6, 12, 6]
    assert record["regress_args"]["blocks"] == [12, 6, 12, 6]
