"""Tiny feature files and a fake run for the evaluate tests (the fake lives only here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pipeline.features import FeatureRecipe, ShardWriter, consolidate
from pipeline.taxonomy import NUM_CLASSES, composite_label_sets, multi_hot
from train.viewnorm import ViewNorm


def make_feature_file(path: Path, modality: str = "rgb", seed: int = 0, n_takes_test: int = 12,
                      n_takes_val: int = 14, views: int = 2, t: int = 2, noise: float = 0.8,
                      init: str = "kinetics", n_takes_train: int = 14) -> Path:
    """A consolidated feature file whose features are a noisy copy of the labels: (T, D=C).
    Splits: train and val single-class takes (class k % 14), test composite takes."""
    rng = np.random.default_rng(seed)
    w = ShardWriter(path, {"backbone": "fake", "modality": modality, "segments": t,
                           "checkpoint_sha256": "0" * 64, "init": init}, rows_per_shard=64)
    sets = composite_label_sets()
    take_rng = np.random.default_rng(1234)  # same takes/labels in every modality
    for k in range(n_takes_test):
        labels = sets[take_rng.integers(len(sets))]
        for v in range(1, views + 1):
            y = multi_hot(labels)
            w.add(f"test{k:03d}_v{v}", f"test{k:03d}", v, "p5", "test", y,
                  y[None, :] + noise * rng.normal(size=(t, NUM_CLASSES)))
    for k in range(n_takes_train):
        y = multi_hot([k % NUM_CLASSES])
        for v in range(1, views + 1):
            w.add(f"train{k:03d}_v{v}", f"train{k:03d}", v, "p1", "train", y,
                  y[None, :] + noise * rng.normal(size=(t, NUM_CLASSES)))
    for k in range(n_takes_val):
        y = multi_hot([k % NUM_CLASSES])
        for v in range(1, views + 1):
            w.add(f"val{k:03d}_v{v}", f"val{k:03d}", v, "p6", "val", y,
                  y[None, :] + noise * rng.normal(size=(t, NUM_CLASSES)))
    w.close()
    return consolidate(path)


@dataclass
class FakeRun:
    """What train.runs.Run offers eval: scores are the mean feature (clip) and its sigmoid (bce)."""

    name: str
    model_name: str
    feature_files: dict
    feature_attrs: dict
    has_clip: bool = True
    has_bce: bool = True
    config: dict = field(default_factory=dict)
    viewnorm: ViewNorm = field(default_factory=ViewNorm)  # none: features are used as stored

    @property
    def feature_recipes(self):
        return {m: FeatureRecipe.from_attrs(a) for m, a in self.feature_attrs.items()}

    def scores(self, features):
        x = np.mean([f.mean(axis=1) for f in features.values()], axis=0)
        out = {}
        if self.has_clip:
            out["clip"] = x
        if self.has_bce:
            out["bce"] = 1 / (1 + np.exp(-4 * (x - 0.5)))
        return out


@pytest.fixture
def feature_file_factory():
    return make_feature_file


@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    """runs/{cpr_clip,bce,finetune} over one tiny rgb feature file; load_run patched."""
    feats = make_feature_file(tmp_path / "features" / "fake-rgb-2seg.h5")
    runs = tmp_path / "runs"
    specs = {"cpr_clip": (True, False), "bce": (False, True)}
    for name in (*specs, "finetune"):
        (runs / name).mkdir(parents=True)
        (runs / name / "checkpoint.safetensors").write_bytes(b"x")

    def load(run_dir):
        run_dir = Path(run_dir)
        clip, bce = specs[run_dir.name]
        return FakeRun(run_dir.name, run_dir.name, {"rgb": feats},
                       {"rgb": {"backbone": "fake", "modality": "rgb", "segments": 2,
                                "init": "kinetics"}}, clip, bce)

    import evaluate.runner as R

    monkeypatch.setattr(R, "_load_run", load)
    return runs


# --- a tiny real pipeline: videos -> extract -> train (session-scoped: built once) -----------

def write_video(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """Encode (N, H, W, 3) uint8 RGB frames as H.264 with the project's ffmpeg."""
    import subprocess

    from pipeline.ffmpeg import ffmpeg_exe

    n, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
                    "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-crf", "20", str(path)],
                   input=frames.tobytes(), check=True)
    return path


def class_frames(labels, seed: int, n: int = 12, h: int = 40, w: int = 48) -> np.ndarray:
    """Frames whose colour blocks depend on the label set, plus noise and motion."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 60, (n, h, w, 3)).astype(np.uint8)
    for k in labels:
        r, c = divmod(k, 4)
        for i in range(n):
            y0, x0 = 2 + r * 10, 2 + c * 11 + (i % 3)
            out[i, y0:y0 + 8, x0:x0 + 8] = (255 - 12 * k, 20 * k % 256, 128)
    return out


@pytest.fixture
def video_tools():
    """(class_frames, write_video) for tests that make their own videos."""
    return class_frames, write_video


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """A tiny dataset (videos + manifest), rgb features from a random tsn_r18 at 32 px, and one
    trained cpr_clip_plus run (test_hash text encoder). Returns a dict of paths."""
    import csv

    import torch

    from pipeline.cli import main as cli_main

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_pipeline")
    data = root / "data"
    rows = []
    sets = composite_label_sets()
    specs = [(f"tr{k}", "train", "p1", (k,)) for k in range(NUM_CLASSES)]
    specs += [(f"va{k}", "val", "p5", (k,)) for k in range(NUM_CLASSES)]
    specs += [(f"te{j}", "test", "p6", sets[j * 37 % len(sets)]) for j in range(4)]
    for i, (take, split, part, labels) in enumerate(specs):
        n_views = 2 if split == "test" else 1
        for v in range(1, n_views + 1):
            vid = f"{take}_v{v}"
            write_video(data / "videos" / f"{vid}.mp4", class_frames(labels, seed=i * 7 + v))
            rows.append([vid, f"videos/{vid}.mp4", take, v, part, split,
                         ";".join(map(str, labels))])
    manifest = data / "manifest.csv"
    with manifest.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["video_id", "path", "take_id", "view", "participant", "split", "labels"])
        wr.writerows(rows)
    config = root / "tiny.toml"
    config.write_text(f'[common]\ndataset = "tiny"\nmanifest = "{manifest}"\n'
                      f'features_dir = "{root / "features"}"\nruns_dir = "{root / "runs"}"\n'
                      f'seed = 0\n')
    rc = cli_main(["extract", "--config", str(config), "backbone=tsn_r18", "modalities=rgb",
                   "segments=2", "short_side=32", "crop_size=32", "checkpoint=none",
                   "workers=0", "device=cpu", "min_frames=4", "batch_videos=8"])
    assert rc == 0, "extract failed"
    rc = cli_main(["train", "--config", str(config), "backbone=tsn_r18", "segments=2",
                   "modalities=rgb", "models=cpr_clip_plus", "epochs=2", "text_encoder=test_hash",
                   "imagine_per_epoch=32", "batch_size=16", "val_every=1", "hidden_dim=32",
                   "device=cpu"])
    assert rc == 0, "train failed"
    return {"root": root, "config": config, "runs": root / "runs", "data": data,
            "run": root / "runs" / "cpr_clip_plus"}
