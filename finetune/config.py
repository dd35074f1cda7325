"""``[finetune]`` of a config TOML: one frozen dataclass, checked when it is built."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from extract.backbones import BackboneName, check_backbone_input
from extract.decoders import DecoderChoice
from pipeline.config import (check_dataset_name, check_device, check_fields, check_range,
                             check_seed, key_error)
from pipeline.features import MODALITIES, Modality

# Keys that change how fast a run goes, where files live or how a call behaves, never the
# weights: left out of the fingerprint, so a checkpoint trained on a GPU box counts as up to
# date on a laptop, and a moved project is not retrained (the manifest's *content* is
# fingerprinted by its sha256). cpu_amp is fingerprinted by its resolved value (weights.py).
NOT_FINGERPRINTED = ("workers", "device", "cache", "cache_dir", "num_threads", "manifest",
                     "dataset", "finetune_dir", "resume",
                     "flow_epochs", "skeleton_epochs")  # they reach a stream as its `epochs`
# Keys only one kind of stream reads, left out of the other kind's fingerprint: a new skeleton
# setting never retrains the flow stream, a new crop never retrains the skeleton stream.
SKELETON_ONLY = ("skeleton_backbone", "skeleton_init", "skeleton_fps", "skeleton_frames",
                 "skeleton_augment")
FRAME_ONLY = ("flow_backbone", "flow_init", "segments", "short_side", "crop_size", "scales",
              "flip", "decoder")


@dataclass(frozen=True)
class FinetuneConfig:
    """``[finetune]`` of a config TOML. Defaults are the real-scale (CPR-Coach) recipe."""

    SECTION: ClassVar[str] = "finetune"
    # one name per concept across stages; the old spellings still load, with a warning
    RENAMED: ClassVar[dict[str, str]] = {"modality": "modalities", "schedule": "lr_schedule",
                                         "threads": "num_threads"}

    manifest: str = "data/cpr_coach/manifest.csv"  # from [common]
    dataset: str = "cpr_coach"  # from [common]: names finetuned/<dataset>/
    finetune_dir: str = "finetuned"  # from [common]: <finetune_dir>/<dataset>/<backbone>-<modality>/
    seed: int = 0  # from [common]: init, epoch order and augmentation all follow from it
    backbone: BackboneName = "tsn_r50"  # CPR-CLIP extracts TSN R50 features
    flow_backbone: BackboneName | Literal[""] = ""  # the flow stream's own backbone ("" = backbone)
    # the skeleton stream's own backbone ("" = backbone): stgcn / stgcn_lite (no frame backbone
    # takes keypoints)
    skeleton_backbone: BackboneName | Literal[""] = ""
    modalities: tuple[Modality, ...] = ("rgb", "flow")  # the two TSN streams, trained one after the other
    segments: int = 8  # T per training clip: TSN's 8 (TSM must match extraction's T)
    short_side: int = 256  # mmaction2 Resize(-1, 256) before cropping, as extraction
    crop_size: int = 224  # ImageNet input size of the ResNet
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)  # mmaction2 TSN MultiScaleCrop scales
    flip: bool = False  # a mirrored view never occurs with fixed cameras (docs/finetune.md)
    epochs: int = 50  # mmaction2 fine-tunes TSN on UCF/HMDB-sized sets for tens of epochs
    flow_epochs: int = 0  # epochs of the flow stream; 0 = `epochs` (flow may converge sooner)
    skeleton_epochs: int = 0  # epochs of the skeleton stream; 0 = `epochs` (its steps are cheap)
    batch_size: int = 32  # global videos per step; each of W processes takes batch_size / W
    lr: float = 0.00125  # mmaction2's 0.01 for batch 256, scaled linearly to batch 32
    momentum: float = 0.9  # mmaction2's TSN SGD
    weight_decay: float = 1e-4  # mmaction2's TSN SGD
    lr_schedule: Literal["cosine", "step", "constant"] = "cosine"  # per-iteration, see loop.lr_at
    warmup_epochs: float = 0.0  # linear warm-up from 0.1 x lr; helps large batches from scratch
    milestones: tuple[int, ...] = (20, 40)  # step schedule: lr *= gamma at these epochs
    gamma: float = 0.1  # step schedule factor
    clip_grad: float = 40.0  # mmaction2's TSN max_norm; 0 disables clipping
    # train: batch statistics | partial: mmaction2 partial BN | frozen: norm_eval
    bn: Literal["train", "partial", "frozen"] = "train"
    sync_bn: bool = False  # SyncBatchNorm under torchrun on CUDA (torch has no CPU SyncBN)
    dropout: float | None = None  # head dropout; None keeps the backbone's (TSN 0.4, TSM 0.5)
    init_checkpoint: str = "none"  # mmaction2/torchvision/safetensors file; none = seeded random
    # flow starts from: same = init_checkpoint | rgb = the finetuned RGB stream
    flow_init: Literal["same", "rgb"] = "same"
    # skeleton starts from: none = seeded random weights (no skeleton network ships weights in a
    # registry package) | same = init_checkpoint (e.g. an ST-GCN file of the user's)
    skeleton_init: Literal["none", "same"] = "none"
    # The skeleton stream's input (extract/skeleton_input.py) and clips (finetune/skeleton.py):
    skeleton_fps: float = 25.0  # frames per second fed to ST-GCN (0 = each file's own); as [extract]
    skeleton_frames: int = 100  # frames per training clip at skeleton_fps (mmaction2's 100): 4 s
    # small rotation, scale, joint jitter, a random window and a few % of speed change; nothing
    # that changes what rate or depth a clip shows (finetune/skeleton.py)
    skeleton_augment: bool = True
    decoder: DecoderChoice = "auto"  # as extraction
    # disk: decode each video once into uint8 .npy under cache_dir | none
    cache: Literal["disk", "none"] = "disk"
    cache_dir: str = ""  # "" = <finetune_dir>/<dataset>/cache
    workers: int = 2  # data-loader processes (decode + crop) per training process
    device: str = "auto"  # auto: cuda (LOCAL_RANK) when present, else cpu
    amp: bool = True  # mixed precision on CUDA (bf16 when supported, else fp16 + GradScaler)
    # bf16 autocast on CPU. auto: only where the CPU runs bf16 natively (AVX512-BF16/AMX,
    # ~1.3-2x faster); elsewhere oneDNN emulates it, ~16x slower than fp32
    cpu_amp: bool | Literal["auto"] = "auto"
    # torch CPU threads. auto: the usable CPUs less the decode workers (and other ranks) beside
    # the model, so they never fight for a core; 0 = torch's own default (one per core)
    num_threads: int | Literal["auto"] = "auto"
    val_every: int = 1  # validate every N epochs (and always after the last)
    # continue an interrupted run: auto = when its saved state has the same fingerprint,
    # true = always (a different config is an error), false = start over (pipeline/runs.py)
    resume: bool | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        check_fields(self)
        check_seed(self)
        check_dataset_name(self)  # names finetuned/<dataset>/
        for key in ("segments", "crop_size", "short_side", "epochs", "batch_size", "val_every"):
            check_range(self, key, ge=1)
        check_backbone_input(self)  # modalities and crop, as extract checks them
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise key_error(self, "scales", f"{self.scales} must be non-empty, each in (0, 1]")
        check_range(self, "lr", gt=0)
        for key in ("momentum", "weight_decay", "clip_grad", "workers"):
            check_range(self, key, ge=0)
        check_range(self, "warmup_epochs", ge=0, lt=self.epochs)
        for key in ("flow_epochs", "skeleton_epochs"):
            n = getattr(self, key)
            if n < 0 or 0 < n <= self.warmup_epochs:
                raise key_error(self, key, f"{n} must be 0 (= epochs) or more than "
                                           f"warmup_epochs {self.warmup_epochs}")
        check_range(self, "skeleton_fps", ge=0)
        # the paper's two temporal strides and kernel 9 need a few frames to see a motion
        check_range(self, "skeleton_frames", ge=16)
        if self.dropout is not None:
            check_range(self, "dropout", ge=0, lt=1)
        if self.num_threads != "auto":
            check_range(self, "num_threads", ge=0)
        for key in ("cpu_amp", "resume"):
            if getattr(self, key) not in (True, False, "auto"):
                raise key_error(self, key, f"{getattr(self, key)!r} is not true, false or auto")
        check_device(self)

    def run_dir(self, modality: str) -> Path:
        """``<finetune_dir>/<dataset>/<backbone>-<modality>/``: one stream's folder."""
        from pipeline.features import finetuned_checkpoint_path

        return finetuned_checkpoint_path(self.finetune_dir, self.dataset, self.backbone,
                                         modality).parent

    @property
    def frame_cache_dir(self) -> Path:
        """Where decoded training frames are cached (``cache = "disk"``)."""
        return Path(self.cache_dir) if self.cache_dir else Path(self.finetune_dir) / self.dataset / "cache"


def stream_config(cfg: FinetuneConfig, modality: str) -> FinetuneConfig:
    """The config one stream trains with: only its modality, its own backbone in ``backbone``
    (``modalities`` is not fingerprinted, so naming one stream changes no weights), and for flow
    (skeleton) ``flow_epochs`` (``skeleton_epochs``), when set, as ``epochs``, so the schedule,
    the logs, the resume state and the fingerprint all see the stream's own epoch count."""
    from extract.backbones import backbone_for

    one = dataclasses.replace(cfg, backbone=backbone_for(cfg, modality), flow_backbone="",
                              skeleton_backbone="", flow_epochs=0, skeleton_epochs=0,
                              modalities=(modality,))
    own = {"flow": cfg.flow_epochs, "skeleton": cfg.skeleton_epochs}.get(modality, 0)
    return dataclasses.replace(one, epochs=own) if own else one


def stream_order(cfg: FinetuneConfig) -> list[str]:
    """The streams of ``cfg.modalities`` in training order: RGB first, so ``flow_init = "rgb"``
    finds it."""
    return sorted(cfg.modalities, key=MODALITIES.index)
