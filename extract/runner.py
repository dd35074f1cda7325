"""The extraction runner: manifest rows in, one HDF5 feature file per modality out.

For each modality (rgb, flow) the runner writes ``features/<dataset>/<backbone>-<modality>-
<T>seg.h5`` through :class:`pipeline.features.ShardWriter` (complete-or-absent shards, then one
consolidated file), so:

- a rerun skips every video already stored (in the final file or in a closed shard);
- a run killed at any point loses at most ``rows_per_shard`` videos of work, and resuming gives
  the same features (to float tolerance: batches may be grouped differently);
- an existing file made with a different recipe (checkpoint, sampling, crops, decoder, seed) is
  an error, never silently mixed.

Data flow per batch of B videos (K spatial views, T segments, D feature dim):
worker processes decode only the sampled frames, resized in the decoder, and crop them
-> (B, K, T, h, w, C) uint8 (pinned on CUDA) -> device -> normalise -> (B*K*T, C, h, w)
-> backbone (channels_last; bf16 autocast on CUDA) -> (B*K*T, D) -> mean over K -> (B, T, D).
A torch DataLoader with ``workers`` processes overlaps decoding with model compute.

The skeleton stream (``modalities`` with "skeleton", backbone ``skeleton_backbone``: stgcn or
stgcn_lite) reads each row's skeleton file instead of its video, in this process (the files
are small), and its ST-GCN sees the whole video at ``skeleton_fps`` and averages its output
over T windows of time: (B, C, F, V) keypoints -> (B, T, D) (extract/skeleton_stream.py).

Bad input (missing / empty / truncated / not-a-video file, too few frames, missing flow, a
missing or unreadable skeleton file, or one where no torso is found) becomes
a row of ``<features_dir>/<dataset>/failures.csv`` (video_id, path, reason) and one log line;
the run goes on and exits non-zero at the end if anything failed.

Under ``torchrun`` the manifest is sharded by RANK / WORLD_SIZE; each rank writes its own shards
and rank 0 consolidates after a barrier (gloo on CPU, NCCL on CUDA).
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from extract.backbones import (BackboneName, WeightsError, backbone_for, check_backbone_input,
                               check_modality, frame_features, get_spec, load_backbone,
                               resolve_checkpoint, stream_view)
from extract.decoders import DecodeError, DecoderChoice, init_decode_worker, open_video
from extract.flow import open_flow, read_recipe
from extract.sampling import describe, segment_indices
from extract.transforms import (NUM_VIEWS, Crop, spatial_views, stack_clip, stack_flow,
                               to_model_input)
from pipeline.config import (build, check_dataset_name, check_device, check_fields, check_range,
                             check_seed, key_error, to_json)
from pipeline.features import (FeatureRecipe, FeatureStoreError, ManifestDiff, Modality,
                               ShardWriter, consolidate, done_video_ids, feature_path,
                               finetuned_checkpoint_path, read_feature_recipe, read_features,
                               shard_dir, sync_to_manifest)
from pipeline.lock import LockHeld, release, take_lock
from pipeline.manifest import ManifestError, VideoRecord, parse_manifest
from pipeline.runtime import init_distributed, pick_device, resolve_cpu_amp

log = logging.getLogger(__name__)

FAILURE_COLUMNS = ("video_id", "path", "reason")


class ExtractError(RuntimeError):
    """A run that cannot start (bad recipe, incompatible existing file); one-line message."""


@dataclass(frozen=True)
class ExtractConfig:
    """``[extract]`` of a config TOML. Defaults are the real-scale (CPR-Coach) recipe."""

    SECTION: ClassVar[str] = "extract"

    dataset: str = "cpr_coach"  # from [common]: names features/<dataset>/
    manifest: str = "data/cpr_coach/manifest.csv"  # from [common]
    features_dir: str = "features"  # from [common]
    finetune_dir: str = "finetuned"  # from [common]: where checkpoint="auto" finds fine-tuned weights
    seed: int = 0  # from [common]: random init when there is no checkpoint
    backbone: BackboneName = "tsn_r50"  # CPR-CLIP uses TSN R50 features (2048-d)
    # the flow stream's own backbone ("" = backbone): e.g. frozen ImageNet MobileNetV2 for RGB
    # beside a ResNet trained on flow from scratch (no network ships flow weights)
    flow_backbone: BackboneName | Literal[""] = ""
    # the skeleton stream's own backbone ("" = backbone): stgcn or stgcn_lite beside a frame
    # backbone, since no backbone takes both frames and keypoints
    skeleton_backbone: BackboneName | Literal[""] = ""
    modalities: tuple[Modality, ...] = ("rgb", "flow")  # the two TSN streams
    segments: int = 8  # T: CPR-CLIP's 8 segments per video
    short_side: int = 256  # TSN test recipe: short side 256 ...
    crop: Crop = "center"  # ... then one centre crop (three/ten/multiscale cost 3-10x)
    crop_size: int = 224  # ... of 224, the ImageNet input size of the backbone
    decoder: DecoderChoice = "auto"  # auto: decord (fast seeks) for short videos, pyav for long ones (bounded memory)
    checkpoint: str = "auto"  # auto: finetuned/<dataset>/<backbone>-<modality>/ if present; none; PATH
    batch_videos: int = 8  # B videos per forward: 8 x 8 frames keeps a GPU busy, CPU RAM small
    workers: int = 2  # decode processes; decoding costs more than the model on 4K
    device: str = "auto"  # auto: cuda when present, else cpu
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    # bf16 on CPU too: ~1.6x faster with AVX512-BF16, ~0.3% feature error; "auto" = only where the
    # CPU has native bf16. Off by default so that features are the same on every machine.
    cpu_amp: bool | Literal["auto"] = False
    min_frames: int = 8  # fewer frames than segments repeats frames: report it as a failure
    # skeleton frames per second fed to ST-GCN (0 = each file's own rate): a fixed rate keeps a
    # compression cycle the same number of frames whatever the camera's rate; as [finetune]
    skeleton_fps: float = 25.0  # CPR-Coach's frame rate
    # append kinematic descriptors (how far and how often each body part moves: rate, depth,
    # jumps; extract/kinematics.py) to the skeleton stream's ST-GCN features; needs skeleton_fps
    skeleton_kinematics: bool = False
    rows_per_shard: int = 64  # a crash loses at most this many videos of work
    allow_outside_root: bool = False  # manifest paths may not leave its folder unless set

    def __post_init__(self) -> None:
        check_fields(self)
        for key in ("segments", "batch_videos", "rows_per_shard", "short_side", "crop_size"):
            check_range(self, key, ge=1)
        check_range(self, "workers", ge=0)
        check_range(self, "min_frames", ge=0)
        check_range(self, "skeleton_fps", ge=0)
        if self.skeleton_kinematics and not self.skeleton_fps:
            raise key_error(self, "skeleton_kinematics", "needs a fixed skeleton_fps (> 0): the "
                            "descriptors' frequencies are read at that rate")
        check_seed(self)
        check_dataset_name(self)
        check_backbone_input(self)  # modalities and crop, as finetune checks them
        check_checkpoint_template(self)
        check_device(self)


# What a checkpoint path may say in braces: one config line can serve both streams.
CHECKPOINT_FIELDS = ("modality", "backbone")


def check_checkpoint_template(cfg: "ExtractConfig") -> None:
    """A ``checkpoint`` path may hold ``{modality}`` and ``{backbone}`` only; anything else in
    braces (``{foo}``, ``{}``, a lone ``{``) is a config error naming the key, not a traceback
    from ``str.format`` when the checkpoint is resolved."""
    import string

    value = cfg.checkpoint or ""
    known = ", ".join("{" + n + "}" for n in CHECKPOINT_FIELDS)
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as e:  # "Single '{' encountered", "expected '}' before end of string"
        raise key_error(cfg, "checkpoint", f"{value!r}: {e}; only {known} may stand in braces "
                        "(write {{ and }} for a literal brace)") from None
    bad = [n for n in names if n not in CHECKPOINT_FIELDS]
    if bad:
        shown = ", ".join("{" + n + "}" for n in bad)
        raise key_error(cfg, "checkpoint", f"{value!r}: {shown} is not known; only {known} are "
                        "filled in (write {{ and }} for a literal brace)")


def config_from_json(text: str) -> ExtractConfig:
    """An ExtractConfig from a feature file's ``config_json`` attribute."""
    data = json.loads(text)
    known = {f.name for f in fields(ExtractConfig)}
    return build(ExtractConfig, {k: v for k, v in data.items() if k in known}, "config_json")


def make_recipe(cfg: ExtractConfig, modality: str, checkpoint: Path | None,
                precision: str, flow_recipe: str = "", skeleton_source: str = "") -> FeatureRecipe:
    """How this run makes ``modality`` features: what the feature file records, and what a
    rerun into the same file must match (:data:`pipeline.features.COMPATIBLE_KEYS`)."""
    from pipeline.provenance import code_version, sha256_file

    L = get_spec(cfg.backbone).clip_len(modality)
    made = dict(sampling=describe(cfg.segments, L, "test"),
                crops=f"{cfg.crop} crop_size={cfg.crop_size} short_side={cfg.short_side} "
                      f"views={NUM_VIEWS[cfg.crop]} (features averaged over views)",
                decoder=cfg.decoder)
    if modality == "skeleton":
        from extract.skeleton_stream import recipe_fields

        made = recipe_fields(cfg)
    dim = get_spec(cfg.backbone).feature_dim
    if modality == "skeleton" and cfg.skeleton_kinematics:
        from extract.kinematics import DIM

        dim += DIM
    return FeatureRecipe(
        backbone=cfg.backbone, modality=modality, segments=cfg.segments, seed=cfg.seed,
        **made, skeleton_source=skeleton_source, feature_dim=dim,
        checkpoint_sha256=sha256_file(checkpoint) if checkpoint else "random-init",
        checkpoint_path=str(checkpoint.resolve()) if checkpoint else "",
        init="checkpoint" if checkpoint else "random", precision=precision,
        config_json=to_json(cfg), code_version=code_version(), flow_recipe=flow_recipe)


# --------------------------------------------------------------------------------------------
# One video -> (K, T, h, w, C) uint8 views (runs in decode workers)


class VideoFailure(Exception):
    """A video that cannot be extracted; goes to failures.csv, the run goes on."""


def video_views(cfg: ExtractConfig, modality: str, video: Path | None,
                flow: Path | None = None) -> np.ndarray:
    """Decode the sampled frames of one video and crop them: (K, T, h, w, C) uint8.

    C = 3 for rgb; 2 * 5 = 10 for flow (x1, y1, ..., x5, y5); for a clip backbone (I3D) the L
    frames of each segment stacked, 3L or 2L. Raises VideoFailure.
    """
    if modality == "skeleton":  # keypoints come from a skeleton file: skeleton_view
        raise VideoFailure(f"{video}: the skeleton stream reads the video's skeleton file, not "
                           "its frames (extract.runner.skeleton_view)")
    T, L = cfg.segments, get_spec(cfg.backbone).clip_len(modality)
    try:
        if modality == "rgb":
            with open_video(video, cfg.decoder, resize_short=cfg.short_side) as r:
                if r.num_frames < cfg.min_frames:
                    raise VideoFailure(f"{video}: too few frames ({r.num_frames} < min_frames "
                                       f"{cfg.min_frames})")
                frames = r.get(segment_indices(r.num_frames, T, L).reshape(-1), cfg.short_side)
            return stack_clip(spatial_views(frames, cfg.crop, cfg.crop_size), L)
        if flow is None:
            raise VideoFailure(f"{video}: no flow for this video (manifest 'flow' is empty; "
                               "run 'cprclip flow')")
        if not flow.exists():
            raise VideoFailure(f"flow {flow} not found (run 'cprclip flow')")
        with open_flow(flow, cfg.decoder, resize_short=cfg.short_side) as r:
            need = max(1, cfg.min_frames - 1)  # F frames give F - 1 flow frames
            if r.num_frames < need:
                raise VideoFailure(f"{flow}: too few flow frames ({r.num_frames} < {need})")
            frames = r.get(segment_indices(r.num_frames, T, L).reshape(-1), cfg.short_side)
        views = spatial_views(frames, cfg.crop, cfg.crop_size, invert_on_flip=(0,))
        return stack_flow(views, L)
    except DecodeError as e:
        raise VideoFailure(str(e)) from None
    except ValueError as e:  # a crop larger than the frame, an odd shape
        raise VideoFailure(f"{video}: {e}") from None


def skeleton_view(cfg: ExtractConfig, skeleton: Path | None) -> np.ndarray:
    """One video's skeleton stream input from its skeleton file: (C, F, V) float32 (C = 3: x,
    y, score; F frames at ``skeleton_fps``; V = 23 joints); FeatureModel takes a batch of them
    as (B, C, F, V). Raises VideoFailure."""
    from extract.skeleton_stream import skeleton_input
    from pipeline.skeleton import SkeletonError

    try:
        return skeleton_input(cfg, skeleton)
    except SkeletonError as e:
        raise VideoFailure(str(e)) from None


class _VideoDataset(torch.utils.data.Dataset):
    def __init__(self, cfg: ExtractConfig, modality: str, records: list[VideoRecord]):
        self.cfg, self.modality, self.records = cfg, modality, records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str]:
        r = self.records[i]
        try:
            return i, video_views(self.cfg, self.modality, r.path, r.flow), ""
        except VideoFailure as e:
            return i, None, str(e)
        except Exception as e:  # noqa: BLE001 - one odd file must not stop the run
            return i, None, f"{type(e).__name__}: {e}"


def _skeleton_batches(cfg: ExtractConfig, records: list[VideoRecord]):
    """The skeleton stream's batches, shaped as ``_collate`` shapes the frame streams': (indices
    of good rows, a list of their (C, F, V) inputs or None, [(index, reason)])."""
    for start in range(0, len(records), cfg.batch_videos):
        good, inputs, fails = [], [], []
        for i in range(start, min(start + cfg.batch_videos, len(records))):
            try:
                inputs.append(skeleton_view(cfg, records[i].skeleton))
                good.append(i)
            except VideoFailure as e:
                fails.append((i, str(e)))
            except Exception as e:  # noqa: BLE001 - one odd file must not stop the run
                fails.append((i, f"{type(e).__name__}: {e}"))
        yield good, (inputs or None), fails


def decode_batches(cfg: ExtractConfig, modality: str, records: list[VideoRecord]) -> Iterator:
    """:func:`_collate`'d batches of ``cfg.batch_videos`` decoded videos, in order.

    One video per loader item, so that the ``workers`` decode the videos of one model batch
    side by side (a loader batch is decoded by one worker, one video after another: with
    batch_videos 4 on a 16-core GPU machine that gave 3.3 s per 4K video against 0.9 s for
    mmaction2's loader); the main process groups them into batches for the model.
    """
    ahead = max(2, -(-2 * cfg.batch_videos // cfg.workers)) if cfg.workers else None
    loader = torch.utils.data.DataLoader(
        _VideoDataset(cfg, modality, records), batch_size=None, shuffle=False,
        num_workers=cfg.workers, collate_fn=_as_is,
        worker_init_fn=(functools.partial(init_decode_worker, workers=cfg.workers)
                        if cfg.workers else None),
        prefetch_factor=ahead, persistent_workers=False)
    return _group(iter(loader), cfg.batch_videos)


def _as_is(item):
    """The loader's collate for one item: keep the numpy views (no tensor conversion)."""
    return item


def _group(items: Iterator, size: int) -> Iterator:
    """Decoded videos ``(index, views or None, reason)``, one at a time -> :func:`_collate`'d
    batches of ``size``, in order."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield _collate(batch)
            batch = []
    if batch:
        yield _collate(batch)


def _collate(batch):
    """-> (indices of good videos, (B, K, T, h, w, C) uint8 tensor or None, [(index, reason)])."""
    good = [(i, v) for i, v, err in batch if v is not None]
    fails = [(i, err) for i, v, err in batch if v is None]
    views = torch.from_numpy(np.stack([v for _, v in good])) if good else None
    return [i for i, _ in good], views, fails


# --------------------------------------------------------------------------------------------
# Model side


class FeatureModel:
    """A loaded backbone that turns (B, K, T, h, w, C) uint8 views into (B, T, D) features;
    for the skeleton stream, (B, C, F, V) keypoints (a tensor, or a list of (C, F_b, V) arrays
    of any lengths: :func:`skeleton_view`) into (B, T, D)."""

    def __init__(self, cfg: ExtractConfig, modality: str, checkpoint: Path | None,
                 device: torch.device):
        self.spec = get_spec(cfg.backbone)
        check_modality(self.spec, modality)
        self.model, self.sha, self.init = load_backbone(cfg.backbone, modality, checkpoint,
                                                        cfg.segments, cfg.seed)
        self.device = device
        self.cuda = device.type == "cuda"
        self.amp = cfg.amp if self.cuda else resolve_cpu_amp(cfg.cpu_amp, "[extract] cpu_amp")
        self.modality, self.segments = modality, cfg.segments
        self.kinematics, self.skeleton_fps = cfg.skeleton_kinematics, cfg.skeleton_fps
        if modality == "skeleton":  # a graph over 23 joints: no image layout to choose
            self.model.to(device)
            return
        # channels_last: ~25% faster convolutions on CPU (oneDNN) as well as on CUDA (a 3D
        # network takes its 5-D form).
        self.model.to(device, memory_format=torch.channels_last_3d if self.spec.dense
                      else torch.channels_last)
        self.mean, self.std = self.spec.mean_std(modality)

    @torch.inference_mode()
    def __call__(self, views: torch.Tensor | list[np.ndarray]) -> np.ndarray:
        if self.modality == "skeleton":
            from extract.skeleton_stream import skeleton_features

            feats = skeleton_features(self.model, views, self.segments, self.device, self.amp)
            if not self.kinematics:
                return feats
            from extract.kinematics import kinematic_features

            inputs = [x.numpy() for x in views.cpu()] if isinstance(views, torch.Tensor) else views
            kin = np.stack([kinematic_features(x, self.skeleton_fps) for x in inputs])
            return np.concatenate([feats, np.repeat(kin[:, None], feats.shape[1], axis=1)], axis=2)
        b, k, t = views.shape[:3]
        x = to_model_input(views.to(self.device, non_blocking=True), self.mean, self.std)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            f = frame_features(self.model, x)
        return f.float().reshape(b, k, t, -1).mean(1).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Runs


@dataclass
class ModalityResult:
    modality: str
    path: Path
    done_before: int = 0
    extracted: int = 0
    failed: int = 0
    seconds: float = 0.0
    # how the stored rows differed from the manifest and were brought in line with it
    manifest: ManifestDiff | None = None


def _append_failures(path: Path, rows: list[tuple[str, str, str]]) -> None:
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    # One write per batch in append mode: lines from different ranks do not interleave.
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    if new:
        w.writerow(FAILURE_COLUMNS)
    w.writerows(rows)
    with open(path, "a", newline="", encoding="utf-8") as f:
        f.write(buf.getvalue())


def _existing_recipe(path: Path) -> FeatureRecipe | None:
    """The recipe of what is already stored for ``path`` (final file, else a closed shard)."""
    if path.exists():
        return read_feature_recipe(path)
    d = shard_dir(path)
    shards = sorted(d.glob("shard-*.h5")) if d.is_dir() else []
    return read_feature_recipe(shards[0]) if shards else None


def _check_compatible(path: Path, recipe: FeatureRecipe) -> None:
    old = _existing_recipe(path)
    if old is None:
        return
    for key, had, has in old.differences(recipe)[:1]:
        raise ExtractError(
            f"{path}: existing features were made with {key}={had!r}, this run has "
            f"{has!r}; delete {path} (and {shard_dir(path).name}/) to re-extract, or "
            "set a different features_dir")


def _check_existing(path: Path, recipe: FeatureRecipe) -> set[str]:
    """Check what an earlier run left at ``path`` (the final file as train and eval read it,
    and its closed shards) and return the video ids already done.

    A damaged file (a missing dataset, a truncated HDF5, NaN rows) would otherwise be taken as
    "already done" and fail only in train; it is an ExtractError saying what to do.
    """
    shards = shard_dir(path)
    try:
        if path.exists():
            read_features(path)  # the full check train and eval make
        _check_compatible(path, recipe)
        return done_video_ids(path)
    except FeatureStoreError as e:
        text = str(e)
        if text.startswith(f"{shards}/"):  # a shard a crash or a bad disk left damaged
            bad = text.split(":", 1)[0]
            raise ExtractError(f"{text}; delete {bad} and rerun: the videos it held are "
                               "extracted again") from None
        raise ExtractError(f"{text}; the existing feature file is damaged: delete it and rerun "
                           "to extract its videos again, or set another features_dir") from None


def _flow_recipe(records: list[VideoRecord]) -> str:
    for r in records:
        if r.flow is not None and r.flow.exists():
            return read_recipe(r.flow)
    return ""


def extract_modality(cfg: ExtractConfig, modality: str, records: list[VideoRecord],
                     device: torch.device, rank: int = 0, world: int = 1,
                     model: "FeatureModel | None" = None) -> ModalityResult:
    """Extract one modality for this rank's share of ``records``; rows go to shards.

    ``model``: an already built FeatureModel for this recipe (bench/extract.py times the
    steady state with it); by default one is built here.
    """
    from pipeline.log import progress

    cfg = stream_view(cfg, modality)
    out = feature_path(cfg.features_dir, cfg.dataset, cfg.backbone, modality, cfg.segments)
    res = ModalityResult(modality, out)
    ckpt = resolve_checkpoint(cfg.checkpoint, finetuned_checkpoint_path(
        cfg.finetune_dir, cfg.dataset, cfg.backbone, modality), cfg.backbone, modality)
    bf16 = cfg.amp if device.type == "cuda" else resolve_cpu_amp(cfg.cpu_amp, "[extract] cpu_amp")
    skeleton = modality == "skeleton"
    if skeleton:
        from extract.skeleton_stream import skeleton_sources
    recipe = make_recipe(cfg, modality, ckpt, "bf16" if bf16 else "fp32",
                         _flow_recipe(records) if modality == "flow" else "",
                         skeleton_sources(records) if skeleton else "")
    done = _check_existing(out, recipe)
    mine = [r for i, r in enumerate(records) if i % world == rank]
    todo = [r for r in mine if r.video_id not in done]
    res.done_before = len(mine) - len(todo)
    if not todo:
        log.info("%s: all %d video(s) of rank %d already extracted", out, len(mine), rank)
        return res
    log.info("%s: %d to extract, %d already done (rank %d/%d, %s, %s)", out.name, len(todo),
             res.done_before, rank, world, device, cfg.decoder)
    t0 = time.time()
    if skeleton:  # small files, read here: no decode workers
        batches = _skeleton_batches(cfg, todo)
    else:
        batches = decode_batches(cfg, modality, todo)  # workers start decoding now
    fm = model if model is not None else FeatureModel(cfg, modality, ckpt, device)
    if fm.sha != recipe.checkpoint_sha256:
        raise ExtractError(f"model weights {fm.sha[:12]} differ from the recipe's checkpoint")
    writer = ShardWriter(out, recipe.to_attrs(), rank=rank, rows_per_shard=cfg.rows_per_shard)
    fail_csv = out.parent / "failures.csv"

    def per_video() -> Iterator[None]:
        for good, views, fails in batches:
            rows = []
            for i, reason in fails:
                r = todo[i]
                shown = {"flow": r.flow, "skeleton": r.skeleton}.get(modality, r.path) or r.path
                log.error("%s: %s: %s", modality, r.video_id, reason)
                rows.append((r.video_id, str(shown), f"{modality}: {reason}"))
            _append_failures(fail_csv, rows)
            res.failed += len(fails)
            if views is not None:
                feats = fm(views)
                for j, i in enumerate(good):
                    r = todo[i]
                    writer.add(r.video_id, r.take_id, r.view, r.participant, r.split,
                               r.multi_hot, feats[j])
                    res.extracted += 1
            for _ in range(len(good) + len(fails)):
                yield None

    try:
        for _ in progress(per_video(), desc=f"extract {modality}", total=len(todo), unit="video"):
            pass
    finally:
        writer.close()  # whatever was extracted is kept
        if world == 1 and not any(writer.dir.iterdir()):
            writer.dir.rmdir()  # nothing written (all failed); another rank could still write
    res.seconds = time.time() - t0
    log.info("%s: %d extracted, %d failed in %.1f s (%.2f videos/s)", out.name, res.extracted,
             res.failed, res.seconds, (res.extracted + res.failed) / max(res.seconds, 1e-9))
    return res


def _load_records(cfg: ExtractConfig) -> list[VideoRecord]:
    # Files are checked per video at decode time, so a missing file is a failure row rather
    # than a reason to stop; other manifest problems (labels, ids) stop the run.
    records, errors = parse_manifest(cfg.manifest, check_files=False,
                                     allow_outside_root=cfg.allow_outside_root)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestError(errors[0] + more)
    return records


def run(cfg: ExtractConfig) -> tuple[list[ModalityResult], int]:
    """Extract every modality of ``cfg``. Returns (per-modality results of this rank, total
    failures over all ranks)."""
    import torch.distributed as dist

    device = pick_device(cfg.device)
    d = init_distributed(device)
    rank, world = d.rank, d.world
    records = _load_records(cfg)
    _make_folder(Path(cfg.features_dir) / cfg.dataset)
    results = []
    locks: list[int | None] = []
    try:
        # A second run on the same output refuses instead of racing this one's consolidation.
        for m in cfg.modalities:
            locks.append(_lock_output(feature_path(cfg.features_dir, cfg.dataset,
                                                   backbone_for(cfg, m), m, cfg.segments), rank))
        for m in cfg.modalities:
            results.append(extract_modality(cfg, m, records, device, rank, world))
        failed = sum(r.failed for r in results)
        if world > 1:
            t = torch.tensor([failed], device=device if device.type == "cuda" else "cpu")
            dist.all_reduce(t)
            failed = int(t.item())
            dist.barrier()
        if rank == 0:
            for r in results:
                d = shard_dir(r.path)
                if d.is_dir() and any(d.glob("shard-*.h5")):
                    consolidate(r.path)
                    log.info("wrote %s", r.path)
                _follow_manifest(r, records)
        if world > 1:
            dist.barrier()
    finally:
        for fd in locks:
            release(fd)  # the kernel also releases it if the process dies
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return results, failed


def _follow_manifest(res: ModalityResult, records: list[VideoRecord]) -> None:
    """Bring the stored rows in line with the manifest as it is now: corrected labels, splits,
    takes, views and participants are written to the file and rows whose video left the
    manifest are removed; features are never recomputed for that (issue 16, item 2)."""
    if not res.path.exists():
        return
    res.manifest = sync_to_manifest(res.path, records)
    if res.manifest:
        log.warning("%s now follows the manifest: %s", res.path.name, res.manifest.describe())


def _make_folder(folder: Path) -> None:
    """Create the output folder, or say in one line why it cannot be (a file in the way)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExtractError(f"{folder}: cannot create the features folder "
                           f"({e.strerror or e}; config keys features_dir, dataset)") from None


def _lock_output(path: Path, rank: int) -> int | None:
    """Hold an exclusive lock on feature file ``path`` for this rank (pipeline.lock)."""
    try:
        return take_lock(path.with_name(f".{path.name}.r{rank}.lock"),
                         f"{path}: another 'cprclip extract' (pid {{pid}}) is writing it; "
                         "wait for it to finish, or set another features_dir")
    except LockHeld as e:
        raise ExtractError(str(e)) from None


# --------------------------------------------------------------------------------------------
# For the assistant (assist/): same features for a new raw video


def recorded_checkpoint(recipe: FeatureRecipe) -> Path | None:
    """The backbone checkpoint a feature file's features were made with, checked against the
    sha256 the file records; None for seeded random weights (re-created from the seed).

    Raises ExtractError naming the checkpoint when it is missing or has changed: features of
    other weights would not match what a model was trained on.
    """
    from pipeline.provenance import sha256_file

    if recipe.init != "checkpoint":
        return None
    ckpt = Path(recipe.checkpoint_path)
    if not ckpt.is_file():
        raise ExtractError(f"{ckpt}: the checkpoint these features were made with is missing")
    sha = sha256_file(ckpt)
    if sha != recipe.checkpoint_sha256:
        raise ExtractError(f"{ckpt}: sha256 {sha[:12]}… differs from the feature file's "
                           f"{recipe.checkpoint_sha256[:12]}…")
    return ckpt


def features_for_videos(video_paths: list[Path], recipe: FeatureRecipe | dict[str, Any],
                        modality: str, flow_paths: list[Path] | None = None,
                        device: str = "cpu") -> np.ndarray:
    """Re-create extraction for new videos exactly as a feature file recorded it.

    ``recipe``: the :class:`~pipeline.features.FeatureRecipe` of the file the model was trained
    on (``FeatureSet.recipe``, :func:`pipeline.features.read_feature_recipe`), or that file's
    attributes as a dict. Its ``config_json`` gives sampling, crops and decoder; its checkpoint
    is re-loaded and checked against ``checkpoint_sha256`` (random init is re-created from the
    seed). For flow without ``flow_paths``, flow is computed into a temporary folder with the
    recorded ``flow_recipe``. Returns (V, T, D) float32.
    Raises ExtractError / VideoFailure with a one-line reason.
    """
    from extract.flow import compute_flow_video, parse_recipe

    if not isinstance(recipe, FeatureRecipe):
        recipe = FeatureRecipe.from_attrs(recipe)
    if recipe.modality != modality:
        raise ExtractError(f"feature attrs are for modality {recipe.modality!r}, "
                           f"asked for {modality!r}")
    cfg = config_from_json(recipe.config_json)
    ckpt = recorded_checkpoint(recipe)
    fm = FeatureModel(cfg, modality, ckpt, pick_device(device))
    video_paths = [Path(p) for p in video_paths]
    out = []
    with tempfile.TemporaryDirectory(prefix="cprclip-flow-") as tmp:
        for i, v in enumerate(video_paths):
            flow = None
            if modality == "flow":
                if flow_paths is not None:
                    flow = Path(flow_paths[i])
                else:
                    rec = parse_recipe(recipe.flow_recipe)
                    if not rec:
                        raise ExtractError("feature attrs have no flow_recipe; pass flow_paths")
                    flow = Path(tmp) / f"{i}.mp4"
                    compute_flow_video(v, flow, rec["method"], int(rec["short_side"]) or None,
                                       float(rec["bound"]))
            views = video_views(cfg, modality, v, flow)
            out.append(fm(torch.from_numpy(views[None]))[0])
    return np.stack(out)


def summary(results: list[ModalityResult], failed: int) -> str:
    parts = []
    for r in results:
        follow = ""
        if r.manifest:
            follow = (f", {r.manifest.relabelled} relabelled, {len(r.manifest.dropped)} removed "
                      "(following the manifest)")
        parts.append(f"{r.modality}: {r.extracted} extracted, {r.done_before} already done, "
                     f"{r.failed} failed{follow} -> {r.path}")
    text = "; ".join(parts)
    if failed:
        text += f". {failed} failure(s) in total, see {results[0].path.parent / 'failures.csv'}"
    return text


__all__ = ["ExtractConfig", "ExtractError", "VideoFailure", "run", "extract_modality",
           "features_for_videos", "recorded_checkpoint", "video_views", "config_from_json",
           "FeatureStoreError", "WeightsError"]
