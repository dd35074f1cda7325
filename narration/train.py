"""``cprclip train task=narration``: hierarchical video-narration pretraining, then zero-shot
recognition from the class prompts (issue 20 part 2; docs/narration.md).

``train_narration(cfg)`` reads the feature rows and their narrations (narration/data.py),
embeds every text once with the frozen encoder (cached), and trains the segment projection
(narration/model.py) on the **training participants only** (the manifest's ``train`` split:
the held-out people are ``val`` and ``test``) with no class label:

    loss = w_clip    * InfoNCE(segments under each commentary line, that line)
         + w_take    * InfoNCE(each video's segments,               its take's keystep)
         + w_session * InfoNCE(each session's videos in the batch,  its abstract)

Run folder ``<runs_dir>/<run_name>/`` (pipeline/runs.py convention):

- ``model.safetensors``: the final weights, the 14 class-prompt embeddings, the text
  transform and any per-view feature statistics (``view_standardise``) (named so that ``cprclip eval``, which takes ``checkpoint*.safetensors``, passes
  it by); ``last.safetensors``: the resume state (weights, AdamW state, epoch, identity);
- ``zeroshot.json``: the zero-shot figures of the final weights (narration/zeroshot.py);
- ``config.json``: ``"task": "narration"``, the resolved config, model args, provenance (feature
  files' sha256, the narration texts' sha256, the text encoder), whether any stream's backbone
  saw class labels (``label_free``), the figures;
- ``metrics.jsonl`` and ``tensorboard/``: losses per epoch, and the zero-shot figures every
  ``val_every`` epochs (a record only: the final weights are kept whatever they say).

Determinism: the projection starts from ``seed``; epoch e shuffles with ``rng([seed, e])`` and
seeds dropout with ``f(seed, e)``; the learning rate is a pure function of the position in
training. A run resumed from ``last.safetensors`` ends with the weights of an uninterrupted
one. Under ``torchrun`` each process embeds its share of every batch and the loss is computed
on the gathered batch (narration/losses.py), so 2 processes give the weights of 1 (dropout
aside: each process draws its own masks).
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from narration.config import NarrationConfig
from narration.data import Corpus, Rows, load_corpus
from narration.losses import gather, gather_ints, info_nce
from narration.model import ModelArgs, SegmentProjection, pool_groups, pool_takes, pool_windows
from narration.zeroshot import class_prompt_texts, figures_table, video_embeddings, zero_shot_figures
from pipeline.config import to_dict
from pipeline.lock import release, take_lock
from pipeline.log import progress
from pipeline.paths import safe_child
from pipeline.provenance import code_version, sha256_file
from pipeline.runs import (METRICS_NAME, MetricsLog, SavedState, fingerprint, open_tensorboard,
                           read_state, resume_after)
from pipeline.runtime import describe, init_distributed, pick_device
from train import checkpoint as ckpt

log = logging.getLogger(__name__)

TASK = "narration"
MODEL = "model.safetensors"
LAST = "last.safetensors"
FIGURES = "zeroshot.json"
# Keys that may differ between an interrupted run and its resumption, or only say where files
# live (the inputs' content is in the identity as sha256s).
RUN_CONTROL_KEYS = ("resume", "stop_after_epoch", "device", "num_threads", "val_every",
                    "runs_dir", "text_cache_dir", "features_dir", "manifest", "dataset",
                    "run_name", "prompt_kinds", "prompt_combine")


def lr_factor(frac: float) -> float:
    """Cosine decay from 1 to 0 over training (pure: resume needs no scheduler state)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(frac, 0.0), 1.0)))


def text_bank(cfg: NarrationConfig, corpus: Corpus) -> tuple[np.ndarray, np.ndarray, Any]:
    """(K, E) the corpus texts and (C, E) the class prompts, both through the text transform
    fitted on the training rows' texts (narrations only, never the prompts)."""
    from train.text import (apply_prompt_transform, build_text_encoder, fit_prompt_transform,
                            prompt_embeddings)

    r = corpus.rows
    train = r.split == "train"
    used = np.unique(np.concatenate([r.line_text[train[r.line_video]], r.keystep[train],
                                     r.abstract[train]]))
    fit = fit_prompt_transform(corpus.raw[used], cfg.text_transform, cfg.whiten_eps)
    enc = build_text_encoder(cfg.text_encoder, cfg.text_model, cfg.text_pretrained, cfg.seed, "cpu")
    prompts = prompt_embeddings(class_prompt_texts(tuple(cfg.prompt_kinds)), cfg.prompt_combine,
                                enc, cfg.text_cache)
    return apply_prompt_transform(corpus.raw, fit), apply_prompt_transform(prompts, fit), fit


def batch_loss(cfg: NarrationConfig, net: torch.nn.Module, b: Rows, text: torch.Tensor,
               session_abstract: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted loss of one batch: ``b`` is this process's share; embeddings and ids are
    gathered from every process before the loss, so each computes the whole batch's."""
    seg, scale = net(torch.from_numpy(b.features))
    parts: dict[str, torch.Tensor] = {}
    if cfg.w_clip and len(b.line_video):
        v = gather(pool_windows(seg, torch.from_numpy(b.line_video), torch.from_numpy(b.line_mask)))
        keys = gather_ints(torch.from_numpy(b.line_key))
        txt = text[gather_ints(torch.from_numpy(b.line_text))]
        parts["clip"] = info_nce(v, txt, keys, scale)
    takes = gather(pool_takes(seg))
    take_ids = gather_ints(torch.from_numpy(b.take))
    if cfg.w_take:
        parts["take"] = info_nce(takes, text[gather_ints(torch.from_numpy(b.keystep))], take_ids,
                                 scale)
    if cfg.w_session:
        sess, ids = pool_groups(takes, gather_ints(torch.from_numpy(b.session)))
        if len(ids) > 1:  # one session in the batch has nothing to be told apart from
            parts["session"] = info_nce(sess, text[session_abstract[ids]], ids, scale)
    weights = {"clip": cfg.w_clip, "take": cfg.w_take, "session": cfg.w_session}
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def run_identity(cfg: NarrationConfig, corpus: Corpus) -> dict[str, Any]:
    conf = {k: v for k, v in to_dict(cfg).items() if k not in RUN_CONTROL_KEYS}
    return {"config": conf, "features": {m: p["sha256"] for m, p in
                                         corpus.provenance["features"].items()},
            "texts": corpus.digest, "text_encoder": corpus.provenance["text_encoder"]["id"]}


def _write_json(path: Path, obj: Any) -> None:
    from pipeline.atomic import write_atomic

    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def train_narration(cfg: NarrationConfig, config_path: str | None = None) -> dict[str, Any]:
    """Pretrain, evaluate zero-shot, write the run folder; returns a summary (every process)."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    if device.type != "cpu":
        log.info("[narration] device %s: the projection is small; running on the CPU", device)
        device = torch.device("cpu")
    dist_ = init_distributed(device)
    run_dir = safe_child(cfg.runs_dir, cfg.run_name)
    lock = None
    try:
        if dist_.main:
            lock = take_lock(run_dir.with_name(f".{run_dir.name}.lock"),
                             f"run {run_dir}: another 'cprclip train task=narration' (pid {{pid}}) "
                             "is training it; wait for it to finish, or set another run_name")
        return _train(cfg, config_path, run_dir, dist_)
    finally:
        if lock is not None:
            release(lock)
        if dist_.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(cfg: NarrationConfig, config_path: str | None, run_dir: Path, dist_) -> dict[str, Any]:
    corpus = load_corpus(cfg)
    rows = corpus.rows
    train = rows.select(rows.split == "train")
    if len(train) < 2:
        raise ValueError(f"{cfg.manifest}: {len(train)} training row(s) with a narration; need 2+")
    bank, prompts, fit = text_bank(cfg, corpus)
    text = torch.from_numpy(bank)
    # one abstract per session id (every row of a session names the same file)
    sess_abs = np.zeros(len(corpus.sessions), dtype=np.int64)
    sess_abs[rows.session] = rows.abstract
    session_abstract = torch.from_numpy(sess_abs)

    torch.manual_seed(cfg.seed)
    args = ModelArgs(in_dim=int(rows.features.shape[-1]), embed_dim=int(bank.shape[1]),
                     hidden=cfg.hidden, dropout=cfg.dropout, logit_scale=cfg.logit_scale,
                     learn_logit_scale=cfg.learn_logit_scale)
    model = SegmentProjection(args)
    model.set_standardisation(torch.from_numpy(train.features))
    net: torch.nn.Module = model
    if dist_.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    identity = run_identity(cfg, corpus)
    last = read_state(cfg.resume, run_dir / LAST, ckpt.load)
    saved = None if last is None else SavedState(int(last[1]["epoch"]),
                                                 fingerprint(last[1]["identity"]),
                                                 last[1]["identity"])
    start = resume_after(cfg.resume, saved, identity, run_dir, cfg.epochs)
    if start:
        tensors, meta = last
        model.load_state_dict(ckpt.strip_prefix(tensors, "model."))
        ckpt.load_optimizer(opt, tensors, meta["param_groups"])
    elif dist_.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (LAST, MODEL, FIGURES, "config.json"):
            (run_dir / name).unlink(missing_ok=True)
    del last
    dist_.barrier()  # rank 0 has cleared the folder before anyone reads or writes it

    record: dict[str, Any] = {
        "task": TASK, "config": to_dict(cfg), "config_file": config_path,
        "model_args": args.to_dict(), "label_free": not corpus.labelled_streams,
        "streams_trained_with_labels": corpus.labelled_streams,
        "class_labels_used": False, **corpus.provenance,
        "prompts": {"kinds": list(cfg.prompt_kinds), "combine": cfg.prompt_combine,
                    "texts": [list(p) for p in class_prompt_texts(tuple(cfg.prompt_kinds))]},
        "code_version": code_version(), "torch_version": torch.__version__,
        "runtime": {**describe(torch.device("cpu"), False, torch.get_num_threads()),
                    "processes": dist_.world},
        "finished": False}
    metrics = writer = None
    if dist_.main:
        metrics = MetricsLog(run_dir / METRICS_NAME)
        metrics.start(start)
        _write_json(run_dir / "config.json", record)
        writer = open_tensorboard(run_dir, start + 1 if start else None)
    n = len(train)
    bs = min(cfg.batch_size, n)
    nb = max(1, n // bs)  # full batches only: every step contrasts as many videos
    stop = cfg.epochs if not cfg.stop_after_epoch else min(cfg.epochs, cfg.stop_after_epoch)
    log.info("narration pretraining: %d training videos (%d lines) of %s, %s, %d step(s) per "
             "epoch of %d videos, %d process(es)%s", n, len(train.line_video),
             "+".join(cfg.modalities), "label-free" if not corpus.labelled_streams else
             f"NOT label-free: {', '.join(corpus.labelled_streams)} fine-tuned with class labels "
             "upstream", nb, bs, dist_.world,
             f", resuming after epoch {start}" if start else "")
    figs: dict[str, Any] = {}
    t_start = time.perf_counter()

    def zero_shot() -> dict[str, Any]:
        emb = video_embeddings(model, rows.features)
        return zero_shot_figures(emb, prompts, rows.labels, rows.split, rows.take_id)

    try:
        epochs = range(start, stop)
        for epoch in (progress(epochs, desc=run_dir.name, total=stop - start, unit="epoch")
                      if dist_.main else epochs):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout masks: (seed, epoch) only
            perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
            net.train()
            sums: dict[str, float] = {}
            for b in range(nb):
                idx = perm[b * bs:(b + 1) * bs]
                mine = train.select(np.sort(idx[dist_.rank::dist_.world]))
                f = lr_factor((epoch + b / nb) / cfg.epochs)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * f
                loss, parts = batch_loss(cfg, net, mine, text, session_abstract)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for k, v in {"loss": float(loss.detach()), **parts}.items():
                    sums[k] = sums.get(k, 0.0) + v
            done = epoch + 1
            row: dict[str, Any] = {"epoch": done, "train/lr": cfg.lr * lr_factor(done / cfg.epochs),
                                   "train/logit_scale": float(model.scale().detach()),
                                   "train/epoch_s": time.perf_counter() - t0}
            row.update({f"train/{'loss' if k == 'loss' else 'loss_' + k}": v / nb
                        for k, v in sums.items()})
            if dist_.main:
                if done % cfg.val_every == 0 or done == stop:
                    figs = zero_shot()
                    row.update(_flat(figs))
                metrics.append(row)
                for k, v in row.items():
                    if k != "epoch" and isinstance(v, (int, float)):
                        writer.add_scalar(k, v, done)
                opt_t, groups = ckpt.optimizer_tensors(opt)
                ckpt.save(run_dir / LAST, {**ckpt.with_prefix(model.state_dict(), "model."),
                                           **opt_t},
                          {"epoch": done, "param_groups": groups, "identity": identity,
                           "task": TASK})
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - t_start
    finished = stop == cfg.epochs
    summary = {"run_dir": str(run_dir), "epochs": stop, "finished": finished,
               "seconds": seconds, "figures": figs, "labelled_streams": corpus.labelled_streams}
    if dist_.main:
        if not figs:  # a resumed call with nothing left to train
            figs = summary["figures"] = zero_shot()
        tensors = {**ckpt.with_prefix(model.state_dict(), "model."),
                   "text.class_prompts": torch.from_numpy(prompts)}
        tensors.update(corpus.viewnorm.to_tensors())  # [narration] view_standardise
        if fit is not None:
            tensors["text.transform_mean"] = torch.from_numpy(np.asarray(fit[0], np.float32))
            tensors["text.transform_matrix"] = torch.from_numpy(np.asarray(fit[1], np.float32))
        if finished:
            ckpt.save(run_dir / MODEL, tensors, {"task": TASK, "model_args": args.to_dict(),
                                                 "text_transform": cfg.text_transform,
                                                 "epoch": stop})
        _write_json(run_dir / FIGURES, {"task": TASK, "epoch": stop,
                                        "label_free": not corpus.labelled_streams,
                                        "streams_trained_with_labels": corpus.labelled_streams,
                                        "modalities": list(cfg.modalities), **figs})
        record.update({"finished": finished, "epochs_done": stop, "zero_shot": figs,
                       "train_seconds_this_call": round(seconds, 2)})
        if finished:
            record["checkpoint_sha256"] = sha256_file(run_dir / MODEL)
        _write_json(run_dir / "config.json", record)
        log.info("%s: %s after %d epoch(s) in %.1fs; zero-shot val top-1 %.3f -> %s", run_dir.name,
                 "finished" if finished else "stopped", stop, seconds,
                 figs.get("val", {}).get("top1", float("nan")), run_dir)
    dist_.barrier()
    return summary


def _flat(figs: dict[str, Any]) -> dict[str, float]:
    """The scalar figures for metrics.jsonl: ``zeroshot/val_top1`` and so on."""
    out = {}
    for split in ("val", "train", "test"):
        for k, v in figs.get(split, {}).items():
            if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool)):
                if k not in ("videos", "takes"):
                    out[f"zeroshot/{split}_{k}"] = v
    return out


def cli_main(config_path: str | None, overrides: Sequence[str]) -> int:
    """``cprclip train task=narration [key=value ...]``: the ``[narration]`` section's keys."""
    from pipeline.config import load_stage_config
    from pipeline.lock import LockHeld
    from pipeline.log import first_line
    from synth.narration import NarrationError

    cfg = load_stage_config(NarrationConfig, "narration", config_path, list(overrides))
    try:
        r = train_narration(cfg, config_path)
    except (OSError, ValueError, KeyError, LockHeld, NarrationError) as e:
        log.error("train task=narration: %s", first_line(e))
        return 1
    if r["figures"]:
        free = ("label-free: no stream's backbone saw a class label" if not r["labelled_streams"]
                else f"NOT label-free upstream: the {', '.join(r['labelled_streams'])} "
                "backbone(s) were fine-tuned with the class labels")
        sys.stdout.write(f"{Path(r['run_dir']).name}\t{r['run_dir']}\tepochs={r['epochs']}\t"
                         f"{'finished' if r['finished'] else 'stopped'}\t"
                         f"seconds={r['seconds']:.1f}\n"
                         f"zero-shot against the 14 class prompts ({'+'.join(cfg.modalities)}; "
                         f"{free}):\n{figures_table(r['figures'])}\n")
    return 0


__all__ = ["train_narration", "cli_main", "batch_loss", "MODEL", "LAST", "FIGURES"]
