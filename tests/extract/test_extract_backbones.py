"""Backbones: the table, tiny forward passes, weight loading and refusing pickles."""
from __future__ import annotations

import logging
import pickle

import pytest
import torch

from extract.backbones import (BACKBONES, WeightsError, build_recognizer, frame_features,
                               load_backbone, load_weights, resolve_checkpoint)
from pipeline.features import finetuned_checkpoint_path


def test_table_lists_required_backbones():
    assert {"tsn_r50", "tsm_r50", "tsn_r18", "tsm_r18", "clip_vitb16"} <= set(BACKBONES)
    assert BACKBONES["tsn_r50"].feature_dim == 2048 and BACKBONES["tsn_r18"].feature_dim == 512
    with pytest.raises(ValueError, match="valid backbones are: tsn_r50, tsm_r50"):
        build_recognizer("x3d", "rgb")
    with pytest.raises(ValueError, match="takes: rgb"):
        build_recognizer("clip_vitb16", "flow")


@pytest.mark.parametrize("name,modality,channels", [("tsn_r18", "rgb", 3), ("tsn_r18", "flow", 10),
                                                    ("tsm_r18", "rgb", 3), ("tsm_r18", "flow", 10)])
def test_mmaction_recognizers_forward_tiny_input(name, modality, channels):
    m = build_recognizer(name, modality, num_segments=4).eval()
    assert type(m).__name__ == "Recognizer2D"
    assert m.backbone.conv1.conv.in_channels == channels
    x = torch.randn(8, channels, 32, 32)  # 2 videos x 4 segments
    with torch.no_grad():
        f = frame_features(m, x)
        # mmaction2's own forward (inputs (videos, T, C, H, W)) still works, head included.
        scores = m(x.view(2, 4, channels, 32, 32), mode="tensor", stage="head")
    assert f.shape == (8, 512) and torch.isfinite(f).all()
    assert scores.shape == (2, 14)


def test_seeded_init_is_reproducible_and_tsm_needs_whole_videos():
    a, b = build_recognizer("tsm_r18", "rgb", seed=3), build_recognizer("tsm_r18", "rgb", seed=3)
    c = build_recognizer("tsm_r18", "rgb", seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    k = "backbone.conv1.conv.weight"
    assert torch.equal(sa[k], sb[k]) and not torch.equal(sa[k], sc[k])
    with pytest.raises(ValueError, match="multiple|divisible"):
        frame_features(a.eval(), torch.randn(5, 3, 32, 32))


def test_tsm_shift_mixes_segments_and_tsn_does_not():
    x = torch.randn(8, 3, 32, 32)
    y = x.clone()
    y[0] += 1.0  # change segment 0 only
    for name, changes_others in [("tsn_r18", False), ("tsm_r18", True)]:
        m = build_recognizer(name, "rgb", num_segments=8).eval()
        with torch.no_grad():
            d = (frame_features(m, x) - frame_features(m, y)).abs().sum(1)
        assert d[0] > 0
        assert bool((d[1:] > 1e-6).any()) == changes_others


def test_load_weights_safetensors_and_pth(tmp_path, caplog):
    from safetensors.torch import save_file

    src = build_recognizer("tsn_r18", "rgb", seed=1)
    dst = build_recognizer("tsn_r18", "rgb", seed=2)
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    sha = load_weights(dst, tmp_path / "w.safetensors")
    assert len(sha) == 64
    k = "backbone.layer1.0.conv1.conv.weight"
    assert torch.equal(dst.state_dict()[k], src.state_dict()[k])
    # An mmaction2-style .pth: {"state_dict": ..., "meta": plain data}, a 400-class head.
    sd400 = dict(sd)
    sd400["cls_head.fc_cls.weight"] = torch.zeros(400, 512)
    sd400["cls_head.fc_cls.bias"] = torch.zeros(400)
    torch.save({"state_dict": {"module." + k: v for k, v in sd400.items()}, "meta": {"epoch": 3}},
               tmp_path / "mm.pth")
    other = build_recognizer("tsn_r18", "rgb", seed=5)
    with caplog.at_level(logging.WARNING):
        load_weights(other, tmp_path / "mm.pth")
    assert torch.equal(other.state_dict()[k], src.state_dict()[k])
    assert "cls_head.fc_cls.weight has shape (400, 512)" in caplog.text  # skipped, reported


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_payload_is_refused(tmp_path, capsys):
    m = build_recognizer("tsn_r18", "rgb")
    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        pickle.dump({"state_dict": {}, "x": Payload()}, f)
    with pytest.raises(WeightsError, match="refused: this checkpoint needs unpickling") as e:
        load_weights(m, p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)
    assert "pwned" not in capsys.readouterr().out
    with pytest.raises(WeightsError, match="not found"):
        load_weights(m, tmp_path / "nope.safetensors")


def test_checkpoint_resolution(tmp_path):
    auto = finetuned_checkpoint_path(tmp_path, "tiny", "tsn_r18", "flow")
    assert auto == tmp_path / "tiny" / "tsn_r18-flow" / "checkpoint.safetensors"
    assert resolve_checkpoint("auto", auto, "tsn_r18", "flow") is None
    assert resolve_checkpoint("none", auto, "tsn_r18", "flow") is None
    auto.parent.mkdir(parents=True)
    auto.write_bytes(b"x")
    assert resolve_checkpoint("auto", auto, "tsn_r18", "flow") == auto
    assert resolve_checkpoint(str(tmp_path / "tiny/tsn_r18-{modality}/checkpoint.safetensors"),
                              auto, "tsn_r18", "flow") == auto
    with pytest.raises(WeightsError, match="not found"):
        resolve_checkpoint(str(tmp_path / "missing.pth"), auto, "tsn_r18", "rgb")


def test_random_init_is_logged(caplog):
    with caplog.at_level(logging.WARNING):
        _, sha, init = load_backbone("tsn_r18", "rgb", None)
    assert (sha, init) == ("random-init", "random")
    assert "RANDOM INIT" in caplog.text


@pytest.mark.slow  # building ViT-B/16 takes ~5-15 s on 2 cores
def test_clip_vitb16_image_tower():
    m = build_recognizer("clip_vitb16", "rgb").eval()
    with torch.no_grad():
        f = frame_features(m, torch.randn(1, 3, 224, 224))
    assert f.shape == (1, 512)
