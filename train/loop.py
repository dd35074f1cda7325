"""The training loop: one readable function per model, shared data and prompt bank.

``train_all(cfg)`` reads the feature files once, builds the prompt-embedding bank once (only
if a model uses text), then trains every model in ``cfg.models`` into ``runs/<model>/``.

A run folder holds ``config.json`` (resolved config, model args, feature provenance, text
encoder, prompt set), ``checkpoint.safetensors`` (final weights + test-prompt embeddings),
``last.safetensors`` (resume state), ``prompts.json``, ``metrics.jsonl`` and TensorBoard
events under ``tensorboard/``; ``metrics.jsonl``, ``tensorboard/`` and the ``resume`` rule are
the run convention every trainer shares (:mod:`pipeline.runs`).

A run folder has one writer: ``runs/.<name>.lock`` (:mod:`pipeline.lock`), so a second
``train`` on it refuses, naming the pid that holds it. Retraining over a finished run never
leaves the run without a model: the new run is written beside it, in ``runs/.<name>.new/``, and
swapped in by rename once its checkpoint is complete. The old run goes with everything eval
wrote into it (thresholds.json, metrics.json: they belong to the old checkpoint). A killed or
stopped retrain stays in ``.<name>.new/``, where ``resume`` finds it.

Determinism: the head is initialised from ``seed``; each epoch's samples come from
``rng([seed, epoch])`` and its dropout masks from ``torch.manual_seed(f(seed, epoch))``; the
learning rate is a pure function of the position in training. So a run resumed from
``last.safetensors`` ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pipeline.config import to_dict
from pipeline.lock import release, take_lock
from pipeline.log import progress
from pipeline.paths import safe_child
from pipeline.provenance import code_version, sha256_file
from pipeline.runs import (METRICS_NAME, MetricsLog, SavedState, fingerprint, open_tensorboard,
                           read_state, resume_after)
from pipeline.runtime import describe, pick_device, resolve_threads
from pipeline.taxonomy import CLASSES, NUM_CLASSES, composite_label_sets, multi_hot, single_label_sets
from train import checkpoint as ckpt
from train.config import MODELS, ModelSpec, TrainConfig
from train.data import (EpochSamples, FeatureRows, epoch_samples, fit_view_norm, imaginable_sets,
                        load_rows, paper_label_sets, split_rows, view_standardised)
from train.losses import bce, contrastive_kl
from train.model import HeadArgs, VideoHead
from train.viewnorm import ViewNorm
from train.prompts import NUM_WORDINGS, check_kinds, prompt, eval_prompt, training_label_sets, wording_combos
from train.text import (TextEncoder, apply_prompt_transform, build_text_encoder, encoder_id,
                        fit_prompt_transform, prompt_embeddings)

log = logging.getLogger(__name__)

# Keys that may differ between an interrupted run and its resumption.
RUN_CONTROL_KEYS = ("resume", "stop_after_epoch", "models", "device", "num_threads", "val_every")
# Where files live, not what the weights follow from: the features' and the manifest's content
# is in the identity as sha256, a cache only saves time. "runs" and "/abs/runs/" are one place.
WHERE_KEYS = ("runs_dir", "features_dir", "text_cache_dir", "manifest")
# Paths that do name what is computed (a text model's folder or weights file) are compared
# resolved, so a relative and an absolute spelling of one file agree.
PATH_KEYS = ("text_model", "text_pretrained")


@dataclass
class TextBank:
    """Frozen prompt embeddings. ``train`` (S, M, E): label set x wording combo; ``test`` (C, E):
    the single-class prompts at the fixed test wording; ``sets`` (S2, E) + ``set_labels``
    (S2, C): every valid label set's test prompt, when composite prompts are scored."""

    encoder: dict[str, Any]
    kinds: tuple[str, ...]
    combine: str
    train: np.ndarray
    test: np.ndarray
    test_texts: list[tuple[str, ...]]
    sets: np.ndarray | None
    set_labels: np.ndarray | None

    @property
    def dim(self) -> int:
        return int(self.test.shape[1])


@dataclass
class Prepared:
    train: FeatureRows
    val: FeatureRows
    provenance: dict[str, Any]
    label_sets: list[tuple[int, ...]]
    text: TextBank | None
    manifest: dict[str, str] | None = None  # {path, sha256} of the manifest the rows follow
    viewnorm: ViewNorm = field(default_factory=ViewNorm)  # [train] view_standardise, fitted on train


def build_text_bank(cfg: TrainConfig, label_sets: list[tuple[int, ...]], device: str,
                    enc: TextEncoder | None = None) -> TextBank:
    """Embed every (label set, wording combo) prompt once, through the disk cache.

    ``enc`` defaults to the encoder the config names (built here).
    """
    if enc is None:
        enc = build_text_encoder(cfg.text_encoder, cfg.text_model, cfg.text_pretrained, cfg.seed,
                                 device)
    kinds = check_kinds(cfg.prompt_kinds)
    combos = wording_combos(kinds)
    prompts = [prompt(s, kinds, c) for s in label_sets for c in combos]
    test_texts = [eval_prompt(s, kinds) for s in single_label_sets()]
    sets = set_labels = None
    extra: list[tuple[str, ...]] = []
    all_sets = single_label_sets() + composite_label_sets()
    if cfg.score_composite_prompts:
        extra = [eval_prompt(s, kinds) for s in all_sets]
    t0 = time.perf_counter()
    emb = prompt_embeddings(prompts + test_texts + extra, cfg.prompt_combine, enc, cfg.text_cache)
    log.info("prompt bank: %d label sets x %d wordings, E=%d, %.1fs", len(label_sets), len(combos),
             emb.shape[1], time.perf_counter() - t0)
    n, c = len(prompts), len(test_texts)
    train = emb[:n].reshape(len(label_sets), len(combos), -1)
    test = emb[n:n + c]
    if cfg.score_composite_prompts:
        sets = emb[n + c:]
        set_labels = np.stack([multi_hot(s) for s in all_sets]).astype(np.float32)
    # one fixed map for every prompt, fitted on the training bank (docs/train.md)
    fit = fit_prompt_transform(train, cfg.prompt_transform, cfg.prompt_whiten_eps)
    if fit is not None:
        train, test = apply_prompt_transform(train, fit), apply_prompt_transform(test, fit)
        sets = apply_prompt_transform(sets, fit) if sets is not None else None
        alike = (test @ test.T)[np.triu_indices(len(test), 1)]  # cosine of each pair of classes
        log.info("prompt transform %s: test prompts %.2f alike on average, %.2f at most",
                 cfg.prompt_transform, alike.mean(), alike.max())
    info = {"id": encoder_id(enc), "name": enc.name, "weights_sha256": enc.weights_sha256,
            "random_init": bool(enc.random_init), "kind": cfg.text_encoder}
    if enc.random_init:
        log.warning("!!! run trained with a RANDOM/TEST text encoder (%s); recorded in config.json", enc.name)
    return TextBank(info, kinds, cfg.prompt_combine, train, test, test_texts, sets, set_labels)


def prepare(cfg: TrainConfig, device: str = "cpu") -> Prepared:
    rows, split, provenance = load_rows(cfg.features_dir, cfg.dataset, cfg.backbones, cfg.segments,
                                        tuple(cfg.modalities), cfg.manifest)
    train, val = split_rows(rows, split)
    log.info("features: %d train singles, %d val rows, T=%d, D=%s", len(train), len(val),
             train.features.shape[1], "+".join(map(str, train.dims)))
    mods = tuple(cfg.modalities)
    viewnorm = fit_view_norm(train, mods, cfg.view_standardise)
    if viewnorm:
        train, val = view_standardised(train, viewnorm, mods), view_standardised(val, viewnorm, mods)
        if viewnorm.unknown_views:
            log.warning("val rows of camera view(s) %s have no training videos: standardised with "
                        "all views' statistics", list(viewnorm.unknown_views))
        log.info("standardised per camera view: %s (views %s)", ", ".join(viewnorm.modalities),
                 sorted({int(v) for v in train.view}))
    if len(val) == 0:
        log.warning("no 'val' rows in the feature files: validation is skipped")
    label_sets = training_label_sets(tuple(sorted(set(cfg.imagine_sizes))))
    if cfg.imagine_scheme == "paper":  # CPR-CLIP's pairs and triples, impossible ones included
        known = set(label_sets)
        label_sets += [s for s in paper_label_sets() if s not in known]
    text = None
    if any(MODELS[m].clip for m in cfg.models):
        text = build_text_bank(cfg, label_sets, device)
    manifest = None
    if cfg.manifest and Path(cfg.manifest).is_file():
        manifest = {"path": str(Path(cfg.manifest).resolve()), "sha256": sha256_file(cfg.manifest)}
    return Prepared(train, val, provenance, label_sets, text, manifest, viewnorm)


def mean_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Macro average precision over the classes that have a positive (sanity metric for val)."""
    from sklearn.metrics import average_precision_score

    keep = labels.sum(axis=0) > 0
    if not keep.any():
        return float("nan")
    return float(average_precision_score(labels[:, keep], scores[:, keep], average="macro"))


def lr_at(cfg: TrainConfig, progress_frac: float) -> float:
    """Learning rate at a fraction of training done (pure: resume needs no scheduler state)."""
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress_frac))
    if cfg.lr_schedule == "step":  # MultiStepLR stepped once per epoch: epoch e has lr * gamma^#{m <= e}
        epoch = math.floor(progress_frac * cfg.epochs + 1e-9)
        return cfg.lr * cfg.lr_gamma ** sum(epoch >= m for m in cfg.lr_milestones)
    return cfg.lr


def make_optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``optimizer = "adamw"`` (ours) or ``"sgd"`` with ``momentum`` / ``nesterov`` (paper)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def head_args(cfg: TrainConfig, model_name: str, prep: Prepared) -> HeadArgs:
    spec = MODELS[model_name]
    return HeadArgs(dims=tuple(prep.train.dims), fusion=cfg.fusion, pooling=cfg.pooling,
                    hidden_dim=cfg.hidden_dim, dropout=cfg.dropout,
                    embed_dim=prep.text.dim if spec.clip else 0,
                    num_classes=NUM_CLASSES if spec.bce else 0,
                    logit_scale=cfg.logit_scale, learn_logit_scale=cfg.learn_logit_scale)


def run_dir_for(cfg: TrainConfig, model_name: str) -> Path:
    """``runs_dir/<run_name or model>``: one folder inside runs_dir (pipeline.paths)."""
    return safe_child(cfg.runs_dir, cfg.run_name or model_name)


def _staging(run_dir: Path) -> Path:
    """Where a retrain over a finished run is written until it is complete."""
    return run_dir.with_name(f".{run_dir.name}.new")


def _retired(run_dir: Path) -> Path:
    """Where the old run waits, for an instant, while the new one is renamed into place."""
    return run_dir.with_name(f".{run_dir.name}.old")


def _comparable(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in cfg_dict.items() if k not in RUN_CONTROL_KEYS + WHERE_KEYS}
    for k in PATH_KEYS:
        v = out.get(k)
        if isinstance(v, str) and v and Path(v).exists():
            out[k] = str(Path(v).resolve())
    return out


def run_identity(cfg_dict: dict[str, Any], model_name: str, features: dict[str, str] | None,
                 manifest: str | None = None) -> dict[str, Any]:
    """What a run's weights follow from (pipeline.runs): the config less the run-control and
    where-files-live keys, the model, the sha256 of each feature file and of the manifest
    whose labels and splits the rows follow (None: as stored in the feature files)."""
    return {"config": _comparable(cfg_dict), "model_name": model_name, "features": features,
            "manifest": manifest}


def _saved(last: tuple[dict[str, torch.Tensor], dict[str, Any]] | None) -> SavedState | None:
    """What ``last.safetensors`` says about its run (its metadata holds the full config)."""
    if last is None:
        return None
    meta = last[1]
    identity = run_identity(meta["config"], meta["model_name"], meta.get("features"),
                            meta.get("manifest"))
    return SavedState(int(meta["epoch"]), fingerprint(identity), identity)


def _complete(run_dir: Path) -> bool:
    """A finished run: its checkpoint is written and config.json says so (written after it)."""
    try:
        record = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(isinstance(record, dict) and record.get("finished")
                and (run_dir / "checkpoint.safetensors").is_file())


def _mend_swap(run_dir: Path) -> None:
    """Finish a swap a kill interrupted between its two renames (see :func:`_swap_in`)."""
    old, new = _retired(run_dir), _staging(run_dir)
    if not old.exists():
        return
    if not run_dir.exists():
        src = new if _complete(new) else old
        log.warning("%s: a retrain was stopped while it replaced the run; putting %s in place",
                    run_dir, "the new run" if src == new else "the old run back")
        os.rename(src, run_dir)
    shutil.rmtree(old, ignore_errors=True)


def _swap_in(new: Path, run_dir: Path) -> None:
    """Replace ``run_dir`` by the complete run in ``new``: two renames, so at no point is there
    a half-written run under the name (only an instant with none; :func:`_mend_swap`)."""
    old = _retired(run_dir)
    shutil.rmtree(old, ignore_errors=True)
    os.rename(run_dir, old)
    os.rename(new, run_dir)
    shutil.rmtree(old, ignore_errors=True)


def _lock_run(run_dir: Path) -> int | None:
    """One writer per run folder; the lock lives beside it, so it survives the swap."""
    return take_lock(run_dir.with_name(f".{run_dir.name}.lock"),
                     f"run {run_dir}: another 'cprclip train' (pid {{pid}}) is training it; "
                     "wait for it to finish, or set another run_name")


def _place(cfg: TrainConfig, run_dir: Path, identity: dict[str, Any]
           ) -> tuple[Path, int, tuple[dict[str, torch.Tensor], dict[str, Any]] | None]:
    """Where this call trains, the epoch it continues after, and the state it continues from.

    A retrain in ``.<name>.new/`` is the latest attempt: ``resume`` continues it when it can,
    otherwise it is dropped. Then the run folder's own state (an interrupted first training, or
    a finished run resumed). Training anew over a finished run goes to ``.<name>.new/``.
    """
    new = _staging(run_dir)
    if (new / "last.safetensors").is_file():
        last = read_state(cfg.resume, new / "last.safetensors", ckpt.load)
        start = resume_after(cfg.resume, _saved(last), identity, new, cfg.epochs)
        if start:
            return new, start, last
    if new.exists():
        shutil.rmtree(new)  # a retrain this call does not continue (the finished run is intact)
    last = read_state(cfg.resume, run_dir / "last.safetensors", ckpt.load)
    start = resume_after(cfg.resume, _saved(last), identity, run_dir, cfg.epochs)
    if start:
        return run_dir, start, last
    if (run_dir / "checkpoint.safetensors").is_file():
        log.info("%s: training anew in %s; the finished run stays until the new one is complete",
                 run_dir, new)
        new.mkdir(parents=True)
        return new, 0, None
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("last.safetensors", "checkpoint.safetensors", "config.json", "prompts.json"):
        (run_dir / name).unlink(missing_ok=True)
    return run_dir, 0, None


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(path)
    except OSError as e:  # e.g. a full disk: name the file, leave no temporary
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None


def _validate(model: VideoHead, val: FeatureRows, text: TextBank | None,
              device: torch.device) -> dict[str, float]:
    if len(val) == 0:
        return {}
    test = torch.from_numpy(text.test).to(device) if text is not None else None
    s = model.scores(torch.from_numpy(val.features).to(device), test)
    out = {f"val/mAP_{k}": mean_ap(v, val.labels) for k, v in s.items()}
    out["val/mAP"] = out.get("val/mAP_clip", out.get("val/mAP_bce", float("nan")))
    return out


TextFor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def run_epoch(model: VideoHead, opt: torch.optim.Optimizer, cfg: TrainConfig, spec: ModelSpec,
              s: EpochSamples, text_for: TextFor | None, epoch: int,
              device: torch.device) -> tuple[dict[str, float], int]:
    """One pass over an epoch's samples in batches of ``cfg.batch_size``.

    ``text_for(set_ids (B,), combos (B,)) -> (B, E)`` gives each sample's prompt embedding; in
    training it indexes the frozen bank (bench/train.py swaps in a re-encoding one to time the
    difference). Returns summed losses and the number of optimizer steps.
    """
    x_all = torch.from_numpy(s.features)
    y_all = torch.from_numpy(s.labels)
    sid_all = torch.from_numpy(s.set_ids)
    combo_all = torch.from_numpy(s.combos)
    nb = math.ceil(len(x_all) / cfg.batch_size)
    sums = {"loss": 0.0, "loss_clip": 0.0, "loss_bce": 0.0}
    steps = 0
    model.train()
    for b in range(nb):
        sl = slice(b * cfg.batch_size, (b + 1) * cfg.batch_size)
        if len(x_all[sl]) < 2:  # a contrastive batch of one has no negatives
            continue
        lr = lr_at(cfg, (epoch + b / nb) / cfg.epochs)
        for g in opt.param_groups:
            g["lr"] = lr
        x = x_all[sl].to(device)
        sid = sid_all[sl].to(device)
        embs, stream_logits = model.stream_outputs(x)
        logits = torch.stack(stream_logits).mean(dim=0) if stream_logits else None
        y = y_all[sl].to(device)
        loss = torch.zeros((), device=device)
        if spec.clip:
            txt = text_for(sid, combo_all[sl].to(device))  # (B, E)
            lg = model.scale() * model.similarity(embs, txt)  # (B, B) video i vs prompt of j
            lc = contrastive_kl(lg, sid, cfg.loss_v2t, cfg.loss_t2v, cfg.clip_targets,
                                cfg.clip_target_scale, y)
            loss = loss + cfg.clip_weight * lc
            sums["loss_clip"] += lc.item()
        if spec.bce:
            lb = bce(logits, y)
            loss = loss + cfg.bce_weight * lb
            if cfg.stream_weight > 0 and len(stream_logits) > 1:  # late fusion: each stream's own BCE
                loss = loss + cfg.stream_weight * cfg.bce_weight * torch.stack(
                    [bce(lg, y) for lg in stream_logits]).mean()
            sums["loss_bce"] += lb.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums["loss"] += loss.item()
        steps += 1
    return sums, steps


def train_one(cfg: TrainConfig, model_name: str, prep: Prepared,
              config_path: str | None = None) -> dict[str, Any]:
    """Train one model into its run folder; returns a summary (name, dir, epochs, last val)."""
    run_dir = run_dir_for(cfg, model_name)
    lock = _lock_run(run_dir)
    try:
        return _train_locked(cfg, model_name, prep, config_path, run_dir)
    finally:
        release(lock)


def _train_locked(cfg: TrainConfig, model_name: str, prep: Prepared, config_path: str | None,
                  run_dir: Path) -> dict[str, Any]:
    """:func:`train_one` once the run's lock is held."""
    _mend_swap(run_dir)
    spec = MODELS[model_name]
    device = pick_device(cfg.device)
    cfg_dict = to_dict(cfg)
    args = head_args(cfg, model_name, prep)
    text = prep.text if spec.clip else None

    torch.manual_seed(cfg.seed)
    model = VideoHead(args)
    model.set_input_stats(prep.train.features)  # real training clips only (resume loads them too)
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(cfg, params)

    # The run convention of pipeline/runs.py: resume rule, metrics.jsonl, tensorboard/.
    feats = {m: v["sha256"] for m, v in prep.provenance.items()}
    manifest_sha = prep.manifest["sha256"] if prep.manifest else None
    out, start, last = _place(cfg, run_dir,
                              run_identity(cfg_dict, model_name, feats, manifest_sha))
    last_path = out / "last.safetensors"
    if start:
        tensors, meta = last
        model.load_state_dict(ckpt.strip_prefix(tensors, "model."))
        # CPU tensors: load_state_dict moves moments to each param's device and keeps `step` as is
        ckpt.load_optimizer(opt, tensors, meta["param_groups"])
    del last
    metrics = MetricsLog(out / METRICS_NAME)
    metrics.start(start)

    record = {
        "model_name": model_name, "config": cfg_dict, "config_file": config_path,
        "model_args": args.to_dict(), "features": prep.provenance, "manifest": prep.manifest,
        "text_encoder": text.encoder if text else None,
        "prompts": {"kinds": list(text.kinds), "combine": text.combine, "wordings": NUM_WORDINGS,
                    "test": {CLASSES[i]: list(p) for i, p in enumerate(text.test_texts)}} if text else None,
        "data": {"train_singles": len(prep.train), "val_rows": len(prep.val),
                 "imagine": spec.imagine, "view_standardise": prep.viewnorm.describe()},
        "code_version": code_version(), "torch_version": torch.__version__, "device": str(device),
        "runtime": describe(device, False, torch.get_num_threads()),
    }
    _write_json(out / "config.json", record)
    if text is not None:
        _write_json(out / "prompts.json", {
            "kinds": list(text.kinds), "combine": text.combine,
            "label_sets": [list(s) for s in prep.label_sets],
            "wording_combos": [list(c) for c in wording_combos(text.kinds)],
            "test": [list(p) for p in text.test_texts]})

    writer = open_tensorboard(out, start + 1 if start else None)  # x axis: epochs
    classes = prep.train.single_class()
    by_size = (imaginable_sets(prep.label_sets, set(int(c) for c in classes) - {0},
                               tuple(cfg.imagine_sizes)) if spec.imagine else None)
    set_index = {s: i for i, s in enumerate(prep.label_sets)}
    bank = torch.from_numpy(text.train).to(device) if text is not None else None
    num_combos = text.train.shape[1] if text is not None else 1
    if spec.clip and not (cfg.loss_v2t or cfg.loss_t2v):
        raise ValueError(f"{model_name}: loss_v2t and loss_t2v are both off; the CLIP loss has no term")

    det_before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    t_start = time.perf_counter()
    last_val: dict[str, float] = {}
    stop = cfg.epochs if not cfg.stop_after_epoch else min(cfg.epochs, cfg.stop_after_epoch)
    try:
        for epoch in progress(range(start, stop), desc=model_name, total=stop - start, unit="epoch"):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout masks depend on (seed, epoch) only
            s = epoch_samples(prep.train, prep.label_sets, set_index, seed=cfg.seed, epoch=epoch,
                              imagine_n=cfg.imagine_per_epoch, keep_singles=cfg.keep_singles,
                              by_size=by_size, mix=cfg.mix, alpha=cfg.mix_alpha, num_combos=num_combos,
                              scheme=cfg.imagine_scheme)
            text_for = (lambda sid, combo: bank[sid, combo]) if spec.clip else None  # cached lookup
            sums, steps = run_epoch(model, opt, cfg, spec, s, text_for, epoch, device)
            n = len(s.features)
            row: dict[str, Any] = {"epoch": epoch + 1}
            for k, v in sums.items():
                if k == "loss" or (k == "loss_clip" and spec.clip) or (k == "loss_bce" and spec.bce):
                    row[f"train/{k}"] = v / max(steps, 1)
            row["train/lr"] = lr_at(cfg, (epoch + 1) / cfg.epochs)
            row["train/samples"] = n
            row["train/epoch_s"] = time.perf_counter() - t0
            if spec.clip:
                row["train/logit_scale"] = model.scale().item()
            done = epoch + 1
            is_last = done == stop
            if done % cfg.val_every == 0 or done == cfg.epochs:
                last_val = _validate(model, prep.val, text, device)
                row.update(last_val)
            metrics.append(row)
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(k, v, done)
            if done % cfg.val_every == 0 or is_last:
                opt_t, groups = ckpt.optimizer_tensors(opt)
                ckpt.save(last_path, {**ckpt.with_prefix(model.state_dict(), "model."), **opt_t},
                          {"epoch": done, "param_groups": groups, "config": cfg_dict,
                           "model_name": model_name, "features": feats,
                           "manifest": manifest_sha})
    finally:
        writer.close()
        torch.use_deterministic_algorithms(det_before)
    seconds = time.perf_counter() - t_start

    finished = stop == cfg.epochs
    if finished and not last_val:  # resumed a run that had already finished
        last_val = _validate(model, prep.val, text, device)
    if finished:
        tensors = ckpt.with_prefix(model.state_dict(), "model.")
        tensors.update(prep.viewnorm.to_tensors())
        if text is not None:
            tensors["text.test_prompts"] = torch.from_numpy(text.test)
            if text.sets is not None:
                tensors["text.set_prompts"] = torch.from_numpy(text.sets)
                tensors["text.set_labels"] = torch.from_numpy(text.set_labels)
        ckpt.save(out / "checkpoint.safetensors", tensors,
                  {"model_args": args.to_dict(), "model_name": model_name})
        record["checkpoint_sha256"] = sha256_file(out / "checkpoint.safetensors")
    record.update({"finished": finished, "epochs_done": stop, "final_val": last_val,
                   "train_seconds_this_call": round(seconds, 2)})
    _write_json(out / "config.json", record)
    if out != run_dir:
        if finished:
            _swap_in(out, run_dir)
            out = run_dir
        else:
            log.info("%s: the retrain stopped in %s; the finished run is untouched until it "
                     "completes (resume=true continues it)", run_dir, out)
    log.info("%s: %s after %d epoch(s) in %.1fs; val %s -> %s", model_name,
             "finished" if finished else "stopped", stop, seconds,
             {k: round(v, 4) for k, v in last_val.items()}, out)
    return {"model": model_name, "run_dir": str(out), "epochs": stop, "finished": finished,
            "seconds": seconds, **last_val}


def train_all(cfg: TrainConfig, config_path: str | None = None) -> list[dict[str, Any]]:
    """Train every model in ``cfg.models``; the features and prompt bank are shared."""
    if cfg.num_threads != 0:  # 0: torch's own default
        # nothing decodes beside a head on features: every usable CPU
        torch.set_num_threads(resolve_threads(cfg.num_threads, 0, "[train] num_threads"))
    device = pick_device(cfg.device)
    log.info("training %s on %s, %d torch thread(s)", ", ".join(cfg.models), device,
             torch.get_num_threads())
    # Every run's lock first: a second train on one of them refuses before reading anything.
    runs = {m: run_dir_for(cfg, m) for m in cfg.models}
    locks: list[int | None] = []
    try:
        for run_dir in runs.values():
            locks.append(_lock_run(run_dir))
        prep = prepare(cfg, str(device))
        return [_train_locked(cfg, m, prep, config_path, runs[m]) for m in cfg.models]
    finally:
        for fd in locks:
            release(fd)
