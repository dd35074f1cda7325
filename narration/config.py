"""``[narration]``: the frozen config of ``cprclip train task=narration`` (docs/narration.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pipeline.config import (check_dataset_name, check_device, check_fields, check_range,
                             check_seed, key_error, text_cache_dir)
from pipeline.features import MODALITIES
from pipeline.paths import name_problem

TextEncoderName = Literal["sentence_transformers", "open_clip", "test_hash"]  # train/text.py


@dataclass(frozen=True)
class NarrationConfig:
    """``[narration]`` of a config TOML: data, model, losses, optimisation, zero-shot prompts."""

    SECTION: ClassVar[str] = "narration"

    # [common]
    dataset: str = "synthetic"
    manifest: str = "data/synthetic/manifest.csv"  # its narration column (or narration/ beside it)
    features_dir: str = "features"
    runs_dir: str = "runs"
    seed: int = 0
    device: str = "cpu"  # a few hundred thousand weights: the CPU is enough
    num_threads: int = 1  # a small projection gains nothing from more threads

    # the video side: the feature store's per-segment features of these streams, concatenated
    backbone: str = "tsn_mnv2"
    skeleton_backbone: str = "stgcn_lite"
    segments: int = 8
    # rgb alone is label-free end to end on the demo (ImageNet weights); its flow and skeleton
    # files come from backbones fine-tuned with the class labels (finetune/), so a run with them
    # is not. Each run records which of its streams saw CPR labels (from the files' recipes).
    modalities: tuple[str, ...] = ("rgb",)
    # streams standardised per camera view with the training videos' statistics (train/viewnorm.py,
    # as [train] view_standardise); entries not in modalities are skipped
    view_standardise: tuple[str, ...] = ()
    hidden: int = 512  # one hidden layer per segment, then the text space (E)
    dropout: float = 0.1
    # the text side: the frozen sentence encoder of [train] (the bundled MiniLM), its cache
    text_encoder: TextEncoderName = "sentence_transformers"
    text_model: str = ""
    text_pretrained: str = ""
    text_cache_dir: str = ""  # "" = <runs_dir>/.text_cache, shared with cprclip train
    # a fixed map of every text embedding, fitted on the training narrations (never on the
    # class prompts): train/text.py PROMPT_TRANSFORMS
    text_transform: Literal["none", "centre", "whiten"] = "centre"
    whiten_eps: float = 0.1  # whiten: the narrations span fewer directions than E

    # the hierarchical loss: InfoNCE at each level, weighted
    w_clip: float = 1.0  # the segments under a commentary line <-> that line
    w_take: float = 1.0  # a video (all segments) <-> its take's keystep
    w_session: float = 0.25  # a session's videos in the batch <-> its abstract
    logit_scale: float = 14.2857  # 1 / 0.07, CLIP's initial temperature
    learn_logit_scale: bool = True  # clamped at 100

    # optimisation
    run_name: str = "narration"  # <runs_dir>/<run_name>/
    epochs: int = 60
    batch_size: int = 64  # videos per step (all processes together)
    lr: float = 1e-3
    weight_decay: float = 0.01
    val_every: int = 5  # epochs between zero-shot figures in metrics.jsonl (never selects weights)
    stop_after_epoch: int = 0  # stop early after this epoch (0 = off); resume=true continues
    resume: bool | Literal["auto"] = False  # pipeline/runs.py

    # zero-shot: the class prompts of train/prompts.py, as [train] builds its test prompts
    prompt_kinds: tuple[str, ...] = ("count", "which", "correct")
    prompt_combine: Literal["concat", "mean"] = "mean"

    @property
    def text_cache(self) -> str:
        return text_cache_dir(self)

    def __post_init__(self) -> None:
        check_fields(self)
        check_seed(self)
        check_dataset_name(self)
        check_device(self)
        check_range(self, "num_threads", ge=0)
        for k in ("segments", "hidden", "epochs", "val_every"):
            check_range(self, k, ge=1)
        check_range(self, "batch_size", ge=2)  # a contrastive batch of one has no negatives
        check_range(self, "dropout", ge=0, lt=1)
        check_range(self, "lr", gt=0)
        check_range(self, "weight_decay", ge=0)
        check_range(self, "whiten_eps", gt=0)
        check_range(self, "logit_scale", gt=0, le=100)
        check_range(self, "stop_after_epoch", ge=0)
        for k in ("w_clip", "w_take", "w_session"):
            check_range(self, k, ge=0)
        if not (self.w_clip or self.w_take or self.w_session):
            raise key_error(self, "w_clip", "every level weight is 0: nothing to learn")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if not self.modalities or bad or len(set(self.modalities)) != len(self.modalities):
            raise key_error(self, "modalities", f"need distinct streams of {', '.join(MODALITIES)}, "
                                                f"got {list(self.modalities)}")
        from train.prompts import check_kinds

        try:
            check_kinds(self.prompt_kinds)
        except ValueError as e:
            raise key_error(self, "prompt_kinds", str(e)) from None
        problem = name_problem(self.run_name)
        if problem:
            raise key_error(self, "run_name", f"{self.run_name!r} {problem}")
        if self.resume not in (True, False, "auto"):
            raise key_error(self, "resume", f"{self.resume!r} is not true, false or auto")
