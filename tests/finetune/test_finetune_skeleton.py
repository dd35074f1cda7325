"""The skeleton stream end to end on generated keypoints: `cprclip finetune` trains ST-GCN on the
single-class rows' skeleton files, `cprclip extract` writes (N, T, D) features with provenance,
and a missing or broken skeleton file becomes a row of failures.csv while the run goes on."""
import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from extract.backbones import load_backbone
from extract.runner import ExtractConfig, skeleton_view
from extract.skeleton_stream import skeleton_features
from finetune.weights import read_checkpoint_meta
from pipeline.cli import main
from pipeline.features import read_features
from pipeline.manifest import load_manifest, write_manifest
from pipeline.provenance import sha256_file
from pipeline.skeleton import Skeleton, read_skeleton, write_skeleton

from skeleton_helpers import make_skeleton_dataset

SEGMENTS = 4


@pytest.fixture(scope="module")
def skeleton_manifest(tmp_path_factory):
    return make_skeleton_dataset(tmp_path_factory.mktemp("skeleton_data"))


def _config(tmp_path, manifest) -> str:
    toml = tmp_path / "skel.toml"
    toml.write_text(f"""
[common]
dataset = "tiny"
manifest = "{manifest}"
features_dir = "{tmp_path / 'features'}"
finetune_dir = "{tmp_path / 'finetuned'}"
seed = 0

[finetune]
backbone = "stgcn_lite"
modalities = ["skeleton"]
epochs = 25
batch_size = 8
lr = 0.05
warmup_epochs = 1
skeleton_fps = 25
skeleton_frames = 24
workers = 0
num_threads = 1
val_every = 25

[extract]
backbone = "stgcn_lite"
modalities = ["skeleton"]
segments = {SEGMENTS}
skeleton_fps = 25
batch_videos = 4
workers = 0
""")
    return str(toml)


def test_finetune_then_extract(skeleton_manifest, tmp_path, capsys):
    cfg = _config(tmp_path, skeleton_manifest)
    assert main(["finetune", "--config", cfg]) == 0
    run = tmp_path / "finetuned" / "tiny" / "stgcn_lite-skeleton"
    ckpt = run / "checkpoint.safetensors"
    meta = read_checkpoint_meta(ckpt)
    assert meta["backbone"] == "stgcn_lite" and meta["modality"] == "skeleton"
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 26))
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    # 4 toy classes (depth, rate, arm angle): far above chance (0.25) on the val person
    assert rows[-1]["val/top1"] >= 0.5, rows[-1]
    # same config, manifest and init: nothing to do
    assert main(["finetune", "--config", cfg]) == 0
    assert "up to date" in capsys.readouterr().out

    assert main(["extract", "--config", cfg]) == 0
    out = tmp_path / "features" / "tiny" / f"stgcn_lite-skeleton-{SEGMENTS}seg.h5"
    fs = read_features(out)
    records = load_manifest(skeleton_manifest)
    assert len(fs) == len(records) and fs.features.shape == (len(records), SEGMENTS, 64)
    assert np.isfinite(fs.features).all()
    r = fs.recipe
    assert (r.backbone, r.modality, r.init) == ("stgcn_lite", "skeleton", "checkpoint")
    assert r.checkpoint_sha256 == sha256_file(ckpt) and r.skeleton_source == "test-synth"
    assert "25 fps" in r.sampling and "torso" in r.sampling
    # the stored rows are what the fine-tuned model gives for each skeleton file
    ecfg = ExtractConfig(backbone="stgcn_lite", modalities=("skeleton",), segments=SEGMENTS,
                         skeleton_fps=25)
    model, _, _ = load_backbone("stgcn_lite", "skeleton", ckpt, SEGMENTS)
    rec = records[3]
    want = skeleton_features(model, [skeleton_view(ecfg, rec.skeleton)], SEGMENTS,
                             torch.device("cpu"))[0]
    np.testing.assert_allclose(fs.features[fs.index()[rec.video_id]], want, atol=1e-5)


def test_bad_skeleton_rows_go_to_failures(skeleton_manifest, tmp_path):
    records = load_manifest(skeleton_manifest)
    bad = skeleton_manifest.parent / "bad"  # inside the dataset folder, as manifest paths must be
    bad.mkdir(exist_ok=True)
    broken = bad / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    sk = read_skeleton(records[2].skeleton)
    empty = write_skeleton(bad / "empty.npz", Skeleton(sk.keypoints * 0, sk.width, sk.height,
                                                        sk.fps, sk.source))
    rows = list(records)
    rows[0] = replace(rows[0], skeleton=broken)
    rows[1] = replace(rows[1], skeleton=None)
    rows[2] = replace(rows[2], skeleton=empty)
    manifest = skeleton_manifest.parent / "manifest_broken.csv"
    write_manifest(manifest, rows)
    cfg = _config(tmp_path, manifest)
    # random init (no finetuned weights here): the rows are what this test is about
    assert main(["extract", "--config", cfg, f"manifest={manifest}", "checkpoint=none"]) == 1
    out = tmp_path / "features" / "tiny" / f"stgcn_lite-skeleton-{SEGMENTS}seg.h5"
    assert len(read_features(out)) == len(rows) - 3
    with open(out.parent / "failures.csv", newline="") as f:
        fails = {r["video_id"]: r for r in csv.DictReader(f)}
    assert set(fails) == {rows[0].video_id, rows[1].video_id, rows[2].video_id}
    assert "broken.npz" in fails[rows[0].video_id]["reason"]
    assert "no skeleton file" in fails[rows[1].video_id]["reason"]
    assert "no keypoint was found" in fails[rows[2].video_id]["reason"]
    for r in fails.values():
        assert r["reason"].startswith("skeleton: ") and "\n" not in r["reason"]
    assert fails[rows[0].video_id]["path"] == str(broken)


def test_skeleton_keys_stay_in_their_stream():
    from finetune.config import FinetuneConfig, stream_config
    from finetune.weights import fingerprint, init_source
    from pipeline.config import ConfigError

    def cfg(**kw):
        base = dict(backbone="tsn_mnv2", skeleton_backbone="stgcn_lite",
                    modalities=("flow", "skeleton"), epochs=10, flow_epochs=4,
                    skeleton_epochs=6, init_checkpoint="pretrained")
        return FinetuneConfig(**{**base, **kw})

    one = stream_config(cfg(), "skeleton")
    assert (one.backbone, one.epochs, one.skeleton_backbone) == ("stgcn_lite", 6, "")
    assert stream_config(cfg(), "flow").backbone == "tsn_mnv2"
    assert stream_config(cfg(skeleton_epochs=0), "skeleton").epochs == 10

    def fp(m, **kw):
        return fingerprint(stream_config(cfg(**kw), m), m, "m", "i", cpu_amp=False)

    # a skeleton setting never retrains flow, a crop never retrains the skeleton stream
    assert fp("flow") == fp("flow", skeleton_frames=48) == fp("flow", skeleton_fps=10)
    assert fp("skeleton") != fp("skeleton", skeleton_frames=48)
    assert fp("skeleton") == fp("skeleton", crop_size=96) != fp("skeleton", lr=0.5)
    assert fp("flow") != fp("flow", crop_size=96)
    # no skeleton network ships weights: the skeleton stream starts from random init by default
    assert init_source(stream_config(cfg(), "skeleton"), "skeleton") == (None, "random-init")
    with pytest.raises(ConfigError, match="skeleton_backbone.*stgcn"):
        FinetuneConfig(backbone="tsn_mnv2", modalities=("skeleton",))
    with pytest.raises(ConfigError, match="skeleton_backbone"):
        FinetuneConfig(backbone="tsn_mnv2", skeleton_backbone="tsn_r18", modalities=("skeleton",))
    with pytest.raises(ConfigError, match="skeleton_frames"):
        cfg(skeleton_frames=4)


def test_extract_appends_kinematics(skeleton_manifest, tmp_path):
    """``skeleton_kinematics = true``: the skeleton rows carry the ST-GCN features followed by the
    kinematic descriptors (the same in every segment), and the recipe says so."""
    from extract.kinematics import DIM, kinematic_features

    cfg = _config(tmp_path, skeleton_manifest)
    assert main(["extract", "--config", cfg, "checkpoint=none", "skeleton_kinematics=true"]) == 0
    out = tmp_path / "features" / "tiny" / f"stgcn_lite-skeleton-{SEGMENTS}seg.h5"
    fs = read_features(out)
    assert fs.features.shape[1:] == (SEGMENTS, 64 + DIM)
    assert fs.recipe.feature_dim == 64 + DIM and "kinematics" in fs.recipe.sampling
    rec = load_manifest(skeleton_manifest)[1]
    ecfg = ExtractConfig(backbone="stgcn_lite", modalities=("skeleton",), segments=SEGMENTS,
                         skeleton_fps=25)
    want = kinematic_features(skeleton_view(ecfg, rec.skeleton), 25)
    row = fs.features[fs.index()[rec.video_id]]
    for t in range(SEGMENTS):
        np.testing.assert_allclose(row[t, 64:], want, rtol=1e-5, atol=1e-6)
    # the image-height amplitudes came through: the file's torso length reached the descriptors
    from extract.kinematics import PER_SIGNAL
    img = row[0, 64:][4 + 12 + 2::PER_SIGNAL]
    assert np.count_nonzero(img) > 0
    np.testing.assert_allclose(img, want[4 + 12 + 2::PER_SIGNAL], rtol=1e-5, atol=1e-7)
    # a rerun without the descriptors is another recipe: refused, not mixed into the file
    assert main(["extract", "--config", cfg, "checkpoint=none"]) != 0


def test_kinematics_need_a_fixed_rate():
    with pytest.raises(ValueError, match="skeleton_kinematics"):
        ExtractConfig(backbone="stgcn_lite", modalities=("skeleton",), skeleton_fps=0,
                      skeleton_kinematics=True)
