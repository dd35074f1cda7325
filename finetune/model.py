"""The network a finetune stream trains: the recognizer ``cprclip extract`` loads, wrapped to
give class scores per T-segment clip, plus the BatchNorm modes and the input layout."""
from __future__ import annotations

import torch
from torch import nn


class SegmentClassifier(nn.Module):
    """Class scores of T-segment clips: (B*T, C, S, S) normalised -> (B, K).

    TSN/TSM: mmaction2's own path (``backbone`` then ``cls_head`` with its segment consensus);
    CLIP ViT: per-frame scores averaged over T; ST-GCN (``scores_per_clip``): skeleton clips
    (B, C, F, V) straight to scores. ``.model`` is the recognizer whose state_dict
    is saved (the keys ``cprclip extract`` loads).
    """

    def __init__(self, model: nn.Module, segments: int):
        super().__init__()
        self.model = model
        self.segments = segments

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.model, "scores_per_clip", False):  # ST-GCN: (B, C, F, V) -> (B, K)
            return self.model(x)
        if hasattr(self.model, "cls_head"):
            return self.model.cls_head(self.model.backbone(x), num_segs=self.segments)
        scores = self.model(x)
        return scores.view(-1, self.segments, scores.shape[-1]).mean(1)


def apply_bn_mode(model: nn.Module, mode: str) -> None:
    """After ``model.train()``: ``frozen`` puts every BatchNorm in eval mode (running statistics,
    mmaction2's ``norm_eval``; affine parameters still learn); ``partial`` does that to all but
    the first BatchNorm and freezes their affine parameters too (mmaction2's ``partial_bn``,
    TSN's recipe for small data); ``train`` leaves batch statistics on."""
    if mode == "train":
        return
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for i, m in enumerate(bns):
        if mode == "partial" and i == 0:
            continue
        m.eval()
        if mode == "partial":
            for p in m.parameters():
                p.requires_grad_(False)


def to_input(clips: torch.Tensor, mean, std, channels_last: bool) -> torch.Tensor:
    """(B, T, S, S, C) uint8 -> (B*T, C, S, S) float32 normalised; frames of one video stay
    consecutive in segment order (what TSM's temporal shift expects)."""
    from extract.transforms import normalize

    b, t, h, w, c = clips.shape
    x = normalize(clips.reshape(b * t, h, w, c), mean, std).permute(0, 3, 1, 2)
    return x if channels_last else x.contiguous()
