"""Pure parts of the finetune stage against hand-computed or independent references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from finetune.config import FinetuneConfig
from finetune.data import hflip, multiscale_crop_box
from finetune.loop import lr_at
from finetune.metrics import accuracy_metrics, confusion_matrix
from extract.backbones import cross_modality_conv1
from finetune.weights import torchvision_to_mmaction


def test_cross_modality_conv1_averages_rgb_and_repeats_for_every_flow_channel():
    w = torch.randn(6, 3, 7, 7, dtype=torch.float64)
    out = cross_modality_conv1(w, 10)
    assert out.shape == (6, 10, 7, 7)
    expected = (w[:, 0] + w[:, 1] + w[:, 2]) / 3.0  # (O, k, k), by hand
    for c in range(10):
        torch.testing.assert_close(out[:, c], expected)
    with pytest.raises(ValueError):
        cross_modality_conv1(torch.zeros(6, 3), 10)


def test_init_weights_applies_cross_modality_init_from_an_rgb_checkpoint(tmp_path):
    from safetensors.torch import save_file

    from extract.backbones import build_recognizer
    from finetune.weights import init_weights

    rgb = build_recognizer("tsn_r18", "rgb", num_segments=4, seed=1)
    path = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(path))
    flow = build_recognizer("tsn_r18", "flow", num_segments=4, seed=2)
    init_weights(flow, path, "flow")
    got = flow.state_dict()
    w = rgb.state_dict()["backbone.conv1.conv.weight"]
    assert got["backbone.conv1.conv.weight"].shape == (64, 10, 7, 7)
    torch.testing.assert_close(got["backbone.conv1.conv.weight"],
                               w.mean(1, keepdim=True).expand(-1, 10, -1, -1))
    # every other tensor is copied as it is
    for k, v in rgb.state_dict().items():
        if k != "backbone.conv1.conv.weight":
            torch.testing.assert_close(got[k], v, msg=k)


def test_torchvision_resnet_names_map_onto_mmaction_names():
    import torchvision

    from extract.backbones import build_recognizer

    tv = torchvision.models.resnet18(weights=None).state_dict()
    mapped = torchvision_to_mmaction(tv)
    own = build_recognizer("tsn_r18", "rgb").state_dict()
    want = {k for k in own if k.startswith("backbone.")}
    assert set(mapped) == want  # fc.* dropped, everything else has a place
    for k, v in mapped.items():
        assert own[k].shape == v.shape, k
    # already-mmaction dicts pass unchanged
    assert torchvision_to_mmaction(own).keys() == own.keys()


def _cfg(**kw):
    base = dict(backbone="tsn_r18", epochs=10, lr=0.1)
    base.update(kw)
    return FinetuneConfig(**base)


def test_lr_schedules():
    c = _cfg(lr_schedule="cosine")
    assert lr_at(c, 0) == pytest.approx(0.1)
    assert lr_at(c, 5) == pytest.approx(0.05)
    assert lr_at(c, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(c, 2.5) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    w = _cfg(lr_schedule="cosine", warmup_epochs=2)
    assert lr_at(w, 0) == pytest.approx(0.01)
    assert lr_at(w, 1) == pytest.approx(0.055)
    assert lr_at(w, 2) == pytest.approx(0.1)
    assert lr_at(w, 6) == pytest.approx(0.05)
    s = _cfg(lr_schedule="step", milestones=(4, 8), gamma=0.1)
    assert [lr_at(s, e) for e in (0, 3.9, 4, 7.5, 8, 9.9)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert lr_at(_cfg(lr_schedule="constant"), 7.3) == pytest.approx(0.1)


def test_multiscale_crop_box_matches_mmaction_candidates():
    h, w = 48, 64
    scales = (1.0, 0.875, 0.75, 0.66)
    sides = [48, 42, 36, 31]  # int(48 * s), by hand
    pairs = {(sw, sh) for i, sh in enumerate(sides) for j, sw in enumerate(sides) if abs(i - j) <= 1}
    allowed = set()
    for cw, ch in pairs:
        ws, hs = (w - cw) // 4, (h - ch) // 4
        for y, x in [(0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws)]:
            allowed.add((y, x, ch, cw))
    rng = np.random.default_rng(0)
    seen = {multiscale_crop_box(h, w, scales, rng) for _ in range(4000)}
    assert seen <= allowed
    assert len(seen) >= 0.9 * len(allowed)  # every size and place gets drawn
    for y, x, ch, cw in seen:
        assert 0 <= y and y + ch <= h and 0 <= x and x + cw <= w


def test_confusion_and_accuracy_against_sklearn():
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.metrics import confusion_matrix as sk_cm

    rng = np.random.default_rng(3)
    y = rng.integers(0, 14, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 14, 200))
    cm = confusion_matrix(y, p)
    np.testing.assert_array_equal(cm, sk_cm(y, p, labels=range(14)))
    m = accuracy_metrics(cm)
    assert m["top1"] == pytest.approx(float((y == p).mean()))
    assert m["mean_class_acc"] == pytest.approx(balanced_accuracy_score(y, p))


def test_flip_inverts_flow_x_only():
    f = np.zeros((1, 2, 3, 2), np.uint8)
    f[0, :, 0] = (200, 50)  # left column: moving right, up
    out = hflip(f, "flow")
    np.testing.assert_array_equal(out[0, :, 2], [[55, 50], [55, 50]])
    rgb = np.arange(18, dtype=np.uint8).reshape(1, 2, 3, 3)
    np.testing.assert_array_equal(hflip(rgb, "rgb"), rgb[:, :, ::-1])


def test_config_rejects_bad_values():
    from pipeline.config import ConfigError

    # checked when built, also when built in code (__post_init__)
    with pytest.raises(ConfigError, match="modalities"):
        _cfg(modalities=("depth",))
    with pytest.raises(ConfigError, match="lr_schedule"):
        _cfg(lr_schedule="poly")
    with pytest.raises(ConfigError, match="crop_size"):
        _cfg(crop_size=300, short_side=256)
    with pytest.raises(ConfigError, match="flow_epochs"):
        _cfg(flow_epochs=-1)
    _cfg()


def test_flow_epochs_reach_only_the_flow_stream():
    from finetune.config import stream_config
    from finetune.weights import fingerprint

    cfg = _cfg(epochs=6, flow_epochs=4)
    assert stream_config(cfg, "rgb").epochs == 6 and stream_config(cfg, "flow").epochs == 4
    assert stream_config(_cfg(epochs=6), "flow").epochs == 6  # 0 = same as epochs
    # Changing flow_epochs leaves the RGB stream's fingerprint alone (no needless retraining) and
    # changes the flow stream's.
    fp = {m: {fe: fingerprint(stream_config(_cfg(epochs=6, flow_epochs=fe), m), m, "m", "i",
                              cpu_amp=False)
              for fe in (0, 4)} for m in ("rgb", "flow")}
    assert fp["rgb"][0] == fp["rgb"][4]
    assert fp["flow"][0] != fp["flow"][4]


@pytest.mark.parametrize("path", ["configs/synthetic.toml", "configs/cpr_coach.toml"])
def test_shipped_configs_load(path):
    from pathlib import Path

    from pipeline.config import load_stage_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_stage_config(FinetuneConfig, "finetune", root / path)
    assert cfg.cpu_amp == "auto"
    # the demo fine-tunes flow (from ImageNet) and the skeleton stream; RGB stays frozen
    # ImageNet (docs/results.md)
    want = ("flow", "skeleton") if path.endswith("synthetic.toml") else ("rgb", "flow")
    assert cfg.modalities == want


def test_cpu_amp_auto_names_the_weights_of_its_resolved_value():
    from finetune.weights import fingerprint

    fp = {(v, r): fingerprint(_cfg(cpu_amp=v), "rgb", "m", "i", cpu_amp=r)
          for v, r in ((True, True), ("auto", True), ("auto", False), (False, False))}
    # "auto" that resolves to bf16 trains what `cpu_amp = true` trained: the same fingerprint,
    # so a config moved from true to "auto" does not retrain where bf16 is native ...
    assert fp[True, True] == fp["auto", True]
    assert fp[False, False] == fp["auto", False]
    # ... and the precision is part of what the weights follow from
    assert fp[True, True] != fp[False, False]


def test_machine_keys_take_auto_and_explicit_values():
    from pipeline.config import ConfigError, load_stage_config

    def load(*ov):
        return load_stage_config(FinetuneConfig, "finetune", None, ["backbone=tsn_r18", *ov])

    assert (load().cpu_amp, load().num_threads, load().resume) == ("auto", "auto", "auto")
    assert load("cpu_amp=false").cpu_amp is False and load("cpu_amp=true").cpu_amp is True
    assert load("num_threads=3").num_threads == 3 and load("num_threads=0").num_threads == 0
    # the old spellings still load (with a warning naming the new key)
    old = load("threads=2", "modality=rgb", "schedule=step")
    assert (old.num_threads, old.modalities, old.lr_schedule) == (2, ("rgb",), "step")
    assert load("resume=false").resume is False
    for bad in ("cpu_amp=sometimes", "num_threads=-1", "num_threads=many", "resume=maybe"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load(bad)
