"""The ``[train]`` config: one frozen dataclass, built from TOML plus ``key=value`` overrides."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pipeline.config import (check_dataset_name, check_device, check_fields, check_range,
                             check_seed, key_error, text_cache_dir)
from pipeline.features import Modality
from pipeline.paths import name_problem


@dataclass(frozen=True)
class ModelSpec:
    """What a model name means: which heads and losses, and whether it imagines composites."""

    clip: bool  # projection head + contrastive loss against prompt embeddings
    bce: bool  # classification head + BCE loss
    imagine: bool  # composite imagination each epoch (ImagineNet-style)


# The four models of the study. A visible table: a bad name lists these. ``ModelName`` is the
# same names as a type for the config (tests/pipeline/test_config.py keeps the two in step).
ModelName = Literal["cpr_clip", "cpr_clip_plus", "bce", "imaginenet_fc"]
MODELS: dict[str, ModelSpec] = {
    "cpr_clip": ModelSpec(clip=True, bce=False, imagine=True),
    "cpr_clip_plus": ModelSpec(clip=True, bce=True, imagine=True),
    "bce": ModelSpec(clip=False, bce=True, imagine=False),  # singles only, no text
    "imaginenet_fc": ModelSpec(clip=False, bce=True, imagine=True),  # imagination, no text
}


@dataclass(frozen=True)
class TrainConfig:
    """``[train]`` of a config TOML."""

    SECTION: ClassVar[str] = "train"

    # [common]
    dataset: str = "synthetic"
    # labels, splits and rows come from this manifest when the file exists (joined on video_id),
    # so a correction there needs no re-extraction; "" = as stored in the feature files
    manifest: str = ""
    features_dir: str = "features"
    runs_dir: str = "runs"
    seed: int = 0

    # which features: features/<dataset>/<backbone>-<modality>-<segments>seg.h5
    backbone: str = "tsn_r50"  # the paper's TSN R50 features
    flow_backbone: str = ""  # the flow files' backbone when it differs ("" = backbone)
    skeleton_backbone: str = ""  # the skeleton files' backbone (stgcn, stgcn_lite; "" = backbone)
    segments: int = 8  # TSN's 8 segments
    modalities: tuple[Modality, ...] = ("rgb", "flow")  # two-stream, as in CPR-Coach; or any of rgb, flow, skeleton
    fusion: Literal["concat", "late"] = "concat"  # concat: one head on all streams' features; late: a head each, scores averaged
    # streams standardised per camera view with the training videos' statistics before the head
    # (train/viewnorm.py): a fixed rig sees the same motion as different pixels in each camera;
    # entries not in `modalities` are skipped (so `modalities=rgb` alone still runs)
    view_standardise: tuple[Modality, ...] = ()

    # what to train
    models: tuple[ModelName, ...] = ("cpr_clip", "cpr_clip_plus", "bce", "imaginenet_fc")
    run_name: str = ""  # runs/<run_name>/ instead of runs/<model>/ (one model only); a folder name

    # optimisation
    epochs: int = 100
    batch_size: int = 64  # contrastive batches need several label sets per batch
    lr: float = 1e-3  # AdamW on a small head
    weight_decay: float = 1e-4
    # Each switch below: "ours" is the default, "paper" what CPR-CLIP's code does (docs/train.md,
    # configs/cpr_clip_paper.toml).
    optimizer: Literal["adamw", "sgd"] = "adamw"  # ours: adamw; paper: sgd
    momentum: float = 0.9  # sgd only (paper: 0.9)
    nesterov: bool = False  # sgd only (paper: true)
    lr_schedule: Literal["cosine", "constant", "step"] = "cosine"  # ours: cosine; paper: step
    lr_milestones: tuple[int, ...] = (20, 40)  # step: epochs at which lr is multiplied by lr_gamma (paper: 20, 40)
    lr_gamma: float = 0.1  # step (paper: 0.1)

    # head
    # over the T segments; tconv/transformer see change over time (train/model.py POOLINGS)
    pooling: Literal["mean", "attention", "tconv", "transformer"] = "mean"
    hidden_dim: int = 512
    dropout: float = 0.2  # few training clips: regularise the head

    # composite imagination (models with imagine=True)
    imagine_per_epoch: int = 2000  # imagined composite samples drawn fresh each epoch
    keep_singles: float = 1.0  # share of real single-class clips kept in each epoch
    mix: Literal["segment", "mean"] = "segment"  # mix (T, D) segment by segment, or the segment means
    imagine_sizes: tuple[int, ...] = (2, 3, 4)  # errors per imagined sample; size drawn uniformly
    mix_alpha: float = 1.0  # Dirichlet concentration of the convex mixing weights (1 = uniform on the simplex)
    # ours: "dirichlet" (the keys above); paper: half of the 78 error pairs and half of the 286
    # triples each epoch, n0 = #Correct training clips each, w ~ U(0, 1) (train/data.py:imagine_paper)
    imagine_scheme: Literal["dirichlet", "paper"] = "dirichlet"

    # text (models with clip=True)
    text_encoder: Literal["sentence_transformers", "open_clip", "test_hash"] = "open_clip"
    text_model: str = "ViT-B-16"  # open_clip architecture, or a sentence-transformers folder ("" = bundled MiniLM)
    text_pretrained: str = ""  # open_clip tag (needs a hub) or local checkpoint file; "" = RANDOM (tests only)
    text_cache_dir: str = ""  # prompt-embedding cache (encoder + weights hash + text); "" = <runs_dir>/.text_cache
    prompt_kinds: tuple[str, ...] = ("count", "which", "correct")  # drop one to ablate it
    prompt_combine: Literal["concat", "mean"] = "concat"  # one joined text, or the mean of per-kind embeddings
    score_composite_prompts: bool = False  # also store every composite set's prompt for scoring
    # a fixed map of every prompt embedding, fitted on the training bank (train/text.py
    # PROMPT_TRANSFORMS): "whiten" spreads apart class prompts a sentence encoder puts close together
    prompt_transform: Literal["none", "centre", "whiten"] = "none"
    prompt_whiten_eps: float = 1e-3  # whiten: added to the bank's covariance, times its largest eigenvalue

    # losses
    loss_v2t: bool = True  # video -> text KL term
    loss_t2v: bool = True  # text -> video KL term
    clip_weight: float = 1.0
    bce_weight: float = 1.0
    # fusion = "late": each stream's own logits also get the BCE loss (this weight, averaged over
    # the streams), so no stream leans on the others to fit the training set; the CLIP term stays
    # on the fused similarity (a per-stream CLIP term cost its scores 0.1-2.8 mAP, docs/results.md)
    stream_weight: float = 0.0
    # KL targets. ours: "normalised" (1 where two samples share a label set, rows summing to 1);
    # paper: "softmax" = softmax(clip_target_scale * GT), GT = 1 on the diagonal and on shared sets;
    # "overlap": the Jaccard overlap of the two label sets, rows summing to 1 (train/losses.py)
    clip_targets: Literal["normalised", "softmax", "overlap"] = "normalised"
    clip_target_scale: float = 10.0  # softmax targets only (paper: 10)
    logit_scale: float = 14.2857  # 1 / 0.07, CLIP's initial temperature
    learn_logit_scale: bool = True  # CLIP learns it; clamped at 100

    # run control
    val_every: int = 5  # epochs between validations (val mAP on held-out singles)
    stop_after_epoch: int = 0  # stop early after this epoch (0 = off); resume=true continues
    # continue from runs/<name>/last.safetensors: true (a different config is an error), auto
    # (only when the saved state has this config and features), false: train anew (pipeline/runs.py)
    resume: bool | Literal["auto"] = False
    device: str = "auto"  # auto = cuda when present, else cpu
    # torch CPU threads. auto: the usable CPUs (pipeline.runtime.resolve_threads); 0 = torch's default
    num_threads: int | Literal["auto"] = "auto"

    @property
    def backbones(self) -> dict[str, str]:
        """{modality: backbone of its feature file} (extract.backbones.backbone_for)."""
        from extract.backbones import backbone_for

        return {m: backbone_for(self, m) for m in self.modalities}

    @property
    def text_cache(self) -> str:
        return text_cache_dir(self)

    def __post_init__(self) -> None:
        check_fields(self)
        check_seed(self)
        check_dataset_name(self)  # names features/<dataset>/
        if not self.models:
            raise key_error(self, "models", f"empty; valid: {', '.join(MODELS)}")
        if self.run_name:  # runs/<run_name>/: one folder inside runs_dir, never "../x"
            problem = name_problem(self.run_name)
            if problem:
                raise key_error(self, "run_name", f"{self.run_name!r} {problem}")
        if self.run_name and len(self.models) != 1:
            raise key_error(self, "run_name", "needs exactly one model in `models`")
        if not self.modalities:
            raise key_error(self, "modalities", "need at least one (rgb, flow, skeleton)")
        if len(set(self.modalities)) != len(self.modalities):
            raise key_error(self, "modalities", f"repeated entry in {list(self.modalities)}")
        if len(set(self.view_standardise)) != len(self.view_standardise):
            raise key_error(self, "view_standardise", f"repeated entry in {list(self.view_standardise)}")
        if not self.imagine_sizes or any(not 2 <= s <= 4 for s in self.imagine_sizes):
            raise key_error(self, "imagine_sizes", f"each must be 2..4, got {list(self.imagine_sizes)}")
        from train.prompts import check_kinds

        try:
            check_kinds(self.prompt_kinds)
        except ValueError as e:
            raise key_error(self, "prompt_kinds", str(e)) from None
        for k in ("epochs", "batch_size", "val_every", "hidden_dim", "segments"):
            check_range(self, k, ge=1)
        for k in ("imagine_per_epoch", "stop_after_epoch", "weight_decay", "clip_weight",
                  "bce_weight", "stream_weight"):
            check_range(self, k, ge=0)
        if self.num_threads != "auto":
            check_range(self, "num_threads", ge=0)
        if self.resume not in (True, False, "auto"):
            raise key_error(self, "resume", f"{self.resume!r} is not true, false or auto")
        check_range(self, "lr", gt=0)
        check_range(self, "momentum", ge=0, lt=1)
        check_range(self, "lr_gamma", gt=0, le=1)
        check_range(self, "clip_target_scale", gt=0)
        check_range(self, "prompt_whiten_eps", gt=0)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise key_error(self, "nesterov", "needs optimizer = \"sgd\" and momentum > 0")
        ms = list(self.lr_milestones)
        if any(m < 1 for m in ms) or ms != sorted(set(ms)):
            raise key_error(self, "lr_milestones", f"must be increasing epochs >= 1, got {ms}")
        check_range(self, "keep_singles", ge=0, le=1)
        check_range(self, "dropout", ge=0, lt=1)  # 1 would drop every unit
        check_range(self, "mix_alpha", gt=0)  # a Dirichlet concentration
        check_range(self, "logit_scale", gt=0, le=100)  # its log is learnt; the model clamps at 100
        check_device(self)
