"""``[synth]``: the frozen config of the synthetic dataset, checked when it is built."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from pipeline.config import ConfigError, check_dataset_name, check_range, check_seed
from pipeline.taxonomy import composite_label_sets
from synth.render import VIEW_NAMES

__all__ = ["SynthConfig"]


@dataclass(frozen=True)
class SynthConfig:
    SECTION: ClassVar[str] = "synth"
    dataset: str = "synthetic"  # name of the folder data/<dataset>/ (must hold the manifest)
    manifest: str = "data/synthetic/manifest.csv"  # videos go to videos/ next to it
    seed: int = 0  # the whole dataset (people, motions, cameras, noise) follows from it
    resolution: str = "160x120"  # WxH, even numbers; small so the demo runs on 2 CPU cores
    fps: int = 25  # CPR-Coach's frame rate
    frames: int = 80  # 3.2 s: 3-6 compressions, enough to see rate and depth
    participants: int = 6  # CPR-Coach has 12; 6 keeps the demo small
    held_out: int = 2  # the last ones: unseen people for val (singles) and test (composites)
    n_double: int = 59  # composite counts of CPR-Coach: 59 double, 10 triple, 5 quadruple
    n_triple: int = 10
    n_quad: int = 5
    views: int = 4  # front, left, right, high oblique (the first `views` of these)
    gop: int = 25  # one key frame per second: cheap seeks for segment sampling
    crf: int = 18  # near-lossless for the small demo frames, so noise and motion survive
    preset: str = "veryfast"  # x264 speed/size: 2x faster than "fast", files ~6% bigger
    workers: int = 2  # processes rendering and encoding in parallel
    max_takes: int = 0  # 0 = all; >0 keeps only that many takes (quick 4K checks)
    # strength of the estimator-like noise on the keypoints in skeleton/ (synth/keypoints.py):
    # 1 = jitter, low scores when occluded, missed frames and left/right swaps as modelled;
    # 0 = a copy of the clean ones (skeleton_clean/)
    keypoint_noise: float = 1.0
    # word error rate of the instructor's commentary in narration/ (synth/narration.py): about
    # what a recogniser makes of a coach in a training room; 0 = the words as spoken
    narration_wer: float = 0.12

    def __post_init__(self) -> None:
        # checked when built, from TOML or directly in code
        check_seed(self)
        check_dataset_name(self)  # names data/<dataset>/
        w, h = self.size
        if w % 2 or h % 2:
            raise ConfigError(f"[synth] resolution {self.resolution!r}: H.264 (yuv420p) needs even "
                              "width and height")
        if not 1 <= self.held_out < self.participants:
            raise ConfigError(f"[synth] held_out={self.held_out} must be >= 1 and less than "
                              f"participants={self.participants}")
        if not 1 <= self.views <= len(VIEW_NAMES):
            raise ConfigError(f"[synth] views={self.views} must be 1..{len(VIEW_NAMES)}")
        for key, size in (("n_double", 2), ("n_triple", 3), ("n_quad", 4)):
            n, avail = getattr(self, key), len(composite_label_sets((size,)))
            if not 0 <= n <= avail:
                raise ConfigError(f"[synth] {key}={n} must be 0..{avail} "
                                  f"(valid sets of {size} errors)")
        for key in ("fps", "frames", "gop", "workers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"[synth] {key}={getattr(self, key)} must be >= 1")
        if self.frames < 2:
            raise ConfigError(f"[synth] frames={self.frames} must be >= 2")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"[synth] crf={self.crf} must be 0..51")
        if self.max_takes < 0:
            raise ConfigError(f"[synth] max_takes={self.max_takes} must be >= 0 (0 = all)")
        # at 10 a third of the frames are missed: more is no estimator any longer, likely a typo
        check_range(self, "keypoint_noise", ge=0, le=10)
        check_range(self, "narration_wer", ge=0, le=1)
        if Path(self.manifest).parent.name != self.dataset:
            raise ConfigError(
                f"[synth] manifest {self.manifest!r} is not in a folder named after dataset "
                f"{self.dataset!r}; pass manifest=data/{self.dataset}/manifest.csv as well, so a "
                "new dataset never overwrites another one's manifest")

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) parsed from ``resolution``."""
        try:
            w, h = (int(v) for v in self.resolution.lower().split("x"))
        except ValueError:
            raise ConfigError(f"[synth] resolution {self.resolution!r} is not WxH, e.g. 160x120 or "
                              "3840x2160") from None
        if w < 16 or h < 16:
            raise ConfigError(f"[synth] resolution {self.resolution!r} is too small (min 16x16)")
        return w, h
