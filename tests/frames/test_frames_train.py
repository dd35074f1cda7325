"""`cprclip train task=frames` on a tiny generated dataset, and `cprclip predict-frames`."""
from __future__ import annotations

import csv
import json

import pytest

from frames.config import FramesConfig
from frames.writer import write_frames
from pipeline.cli import main as cli
from pipeline.runs import read_metrics


@pytest.fixture(scope="module")
def frames_root(frames_manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("frames_ds") / "frames"
    write_frames(FramesConfig(manifest=str(frames_manifest), frames_dir=str(root),
                              frames_per_video=4))
    return root


def _args(root, runs, *more):
    # 32-px crops of 64x48 frames, the bag-of-words test encoder: a few seconds on one core
    return ["train", "--config", "configs/synthetic.toml", "task=frames", f"frames_dir={root}",
            f"runs_dir={runs}", "short_side=40", "crop_size=32", "text_encoder=test_hash",
            "epochs=12", "batch_size=8", "lr=0.01", "backbone_lr=0.001", "num_threads=1",
            *more]


# a 2x2 grid after 14 of MobileNetV2's blocks (at crop 32 the 19-block map is 1x1), the last
# of them trained
GRID = ("backbone_blocks=14", "train_blocks=1", "pooling=grid", "grid_channels=4")


@pytest.fixture(scope="module")
def trained(frames_root, tmp_path_factory):
    runs = tmp_path_factory.mktemp("frames_runs")
    assert cli(_args(frames_root, runs, *GRID)) == 0
    return runs


@pytest.mark.parametrize("loss", ["ce", "js"])
def test_loss_falls_and_the_best_checkpoint_is_kept(trained, loss):
    from frames.predict import load_frames_run, predict_images

    run = trained / f"frames_{loss}"
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, 13))
    first, last = rows[0]["train/loss"], rows[-1]["train/loss"]
    assert last < 0.7 * first, (first, last)
    record = json.loads((run / "config.json").read_text())
    assert record["task"] == "frames" and record["finished"] and record["loss"] == loss
    best = max(rows, key=lambda r: (r["val/top1"], r["val/top5"]))
    assert record["best_epoch"] == best["epoch"] and record["best_val"]["top1"] == best["val/top1"]
    assert best["val/top1"] >= 0.75  # the square's colour and corner name the class
    assert (run / "tensorboard").is_dir() and (run / "last.safetensors").is_file()
    # best.safetensors holds the best epoch's weights: scoring val with it gives its top-1
    from frames.layout import load_frame_dataset

    r = load_frames_run(run)
    ds = load_frame_dataset(record["dataset"]["root"])
    rows_val = ds.split("val")
    got = predict_images(r, [x.path for x in rows_val], top_k=1)
    acc = sum(top[0][0] == x.cls for (top, _), x in zip(got, rows_val)) / len(rows_val)
    assert acc == pytest.approx(best["val/top1"], abs=1e-6)
    # the composite-error stages pass frames runs by: no checkpoint*.safetensors here
    assert not list(run.glob("checkpoint*.safetensors"))


def test_resume_ends_where_an_uninterrupted_run_ends(frames_root, trained, tmp_path):
    runs = tmp_path / "runs"
    args = _args(frames_root, runs, *GRID, "losses=ce")
    assert cli([*args, "stop_after_epoch=5"]) == 0
    assert not json.loads((runs / "frames_ce" / "config.json").read_text())["finished"]
    assert len(list((runs / ".frames_cache").glob("*.safetensors"))) == 1
    assert cli([*args, "resume=true"]) == 0  # its frozen outputs come from the cache
    a = [r["train/loss"] for r in read_metrics(runs / "frames_ce" / "metrics.jsonl")]
    b = [r["train/loss"] for r in read_metrics(trained / "frames_ce" / "metrics.jsonl")]
    assert a == pytest.approx(b, rel=1e-4)


def test_predict_frames_writes_top5_with_scores(trained, frames_root, tmp_path, capsys):
    src = tmp_path / "list.csv"
    rows = list(csv.DictReader((frames_root / "metadata.csv").open()))
    with src.open("w") as f:
        f.write("Path,truth\n")
        for r in rows[:6]:
            f.write(f"{frames_root / r['path']},{r['class']}\n")
        f.write("missing.jpg,00_correct\n")
    base = ["predict-frames", "--config", "configs/synthetic.toml", f"csv={src}", "column=Path",
            f"runs_dir={trained}", "num_threads=1"]
    assert cli([*base, "run=frames_js", "label_column=truth"]) == 1  # one image is missing
    out = list(csv.reader((tmp_path / "list.top5.csv").open()))
    header = ["Path", "label"] + [f"{k}{i}" for i in range(1, 5) for k in ("top", "score")]
    assert out[0] == header + ["error"]
    assert len(out) == 8 and [r[0] for r in out[1:7]] == [str(frames_root / r["path"]) for r in rows[:6]]
    for r in out[1:7]:  # 4 classes here: top-4, probabilities in decreasing order, no error
        scores = [float(r[3 + 2 * i]) for i in range(4)]
        assert scores == sorted(scores, reverse=True) and 0.99 <= sum(scores) <= 1.01
        assert len(set(r[2::2][:4])) == 4 and r[-1] == ""
    assert out[7][2:10] == [""] * 8 and "not found" in out[7][-1]
    assert "top-1" in capsys.readouterr().out
    # a bad column is one line naming the file and the columns there; no run is an error too
    assert cli([*base, "column=Image"]) == 2
    assert cli([*base, "run=nope"]) == 2
    assert cli([*base, f"out={src}"]) == 2


def test_frozen_backbone_and_bad_task(frames_root, tmp_path):
    runs = tmp_path / "runs"
    assert cli(_args(frames_root, runs, "train_blocks=0", "pooling=avg", "losses=js",
                     "epochs=2")) == 0
    from safetensors import safe_open  # the checkpoint is safetensors, never a pickle

    with safe_open(str(runs / "frames_js" / "best.safetensors"), "pt") as f:
        assert "model.captions" in f.keys() and "model.proj.1.weight" in f.keys()
    assert cli(["train", "--config", "configs/synthetic.toml", "task=nope"]) == 2
