"""``cprclip predict-frames csv=FILE column=Path``: the top classes of every image in a CSV.

    cprclip predict-frames csv=val.csv column=Path [run=runs/frames_js] [out=FILE]
    cprclip predict-frames csv=data/synthetic/frames/metadata.csv column=path label_column=class

Keys are those of ``[predict_frames]`` (:class:`frames.config.PredictFramesConfig`). Relative
image paths are read from the CSV's folder. The output CSV has one row per input row, in order:

    <column>, top1, score1, ..., top5, score5, error

``topK`` is a class name (the run's class folders), ``scoreK`` its softmax probability over the
C classes (4 decimals), ``error`` a one-line reason when the image could not be read (its
predictions are then empty). With ``label_column`` the true class is copied as ``label`` and
the top-1 / top-k accuracy is printed. Exit code 0 when every image was scored, 1 when some
could not be read, 2 for a config, run or CSV problem.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class PredictFramesError(ValueError):
    """A run or CSV that cannot be used; one line naming the file, row or key."""


@dataclass
class FramesRun:
    """A trained frames run: its model (best weights), classes and record (config.json)."""

    path: Path
    model: Any  # frames.model.FrameClip
    classes: tuple[str, ...]
    record: dict[str, Any]


def frames_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` that hold a frames run (best.safetensors + task "frames")."""
    from frames.train import BEST

    out = []
    for d in sorted(root.glob("*/")) if root.is_dir() else []:
        if d.name.startswith(".") or not (d / BEST).is_file():
            continue
        try:
            if json.loads((d / "config.json").read_text()).get("task") == "frames":
                out.append(d)
        except (OSError, ValueError, AttributeError):
            continue
    return out


def _best_top1(d: Path) -> float:
    try:
        return float(json.loads((d / "config.json").read_text())["best_val"]["top1"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1.0


def resolve_run(run: str, runs_dir: str) -> Path:
    """``run`` as a folder, else a name under ``runs_dir``; "" = the best frames run by val
    top-1. Raises PredictFramesError listing the frames runs there."""
    from frames.train import BEST

    root = Path(runs_dir)
    there = frames_runs(root)
    names = ", ".join(d.name for d in there) or "none (run 'cprclip train task=frames')"
    if not run:
        if not there:
            raise PredictFramesError(f"no frames run under {root}; run 'cprclip train "
                                     "task=frames' or set run=FOLDER")
        return max(there, key=_best_top1)
    given = Path(run)
    for p in ([given] if given.is_absolute() else [given, root / given]):
        if (p / BEST).is_file():
            return p
    raise PredictFramesError(f"run {run}: no {BEST} there nor under {root}; frames runs under "
                             f"{root}: {names}")


def load_frames_run(run_dir: str | Path) -> FramesRun:
    """The model of ``run_dir/best.safetensors`` (built from its model args; never unpickles)."""
    import torch

    from frames.model import FrameModelArgs, build_model
    from frames.train import BEST, TASK
    from train import checkpoint as ckpt

    run_dir = Path(run_dir)
    tensors, meta = ckpt.load(run_dir / BEST)
    if meta.get("task") != TASK:
        raise PredictFramesError(f"{run_dir / BEST}: not a frames checkpoint (task "
                                 f"{meta.get('task')!r})")
    try:
        record = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise PredictFramesError(f"{run_dir / 'config.json'}: cannot read the run record ({e})") from None
    args = FrameModelArgs.from_dict(meta["model_args"])
    model, _ = build_model(args, None)
    with torch.no_grad():
        model.load_state_dict(ckpt.strip_prefix(tensors, "model."))
    classes = tuple(record.get("classes") or [])
    if len(classes) != args.num_classes:
        raise PredictFramesError(f"{run_dir / 'config.json'}: {len(classes)} classes but the "
                                 f"model scores {args.num_classes}")
    return FramesRun(run_dir, model.eval(), classes, record)


def read_image_column(path: Path, column: str, label_column: str = "") -> tuple[list[str], list[str]]:
    """(image paths, labels) of a CSV's ``column`` (and ``label_column``; [] without one)."""
    from pipeline.manifest import ManifestError, _read_text

    try:
        text = _read_text(path, what="image list")
    except ManifestError as e:
        raise PredictFramesError(str(e)) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    for key, col in (("column", column), ("label_column", label_column)):
        if col and col not in header:
            raise PredictFramesError(f"{path}: no column {col!r} (key '{key}'); its columns are: "
                                     f"{', '.join(header)}")
    paths, labels = [], []
    for row in reader:
        line = reader.line_num
        value = (row.get(column) or "").strip()
        if not value:
            raise PredictFramesError(f"{path}:row {line}: field {column!r}: empty")
        paths.append(value)
        if label_column:
            labels.append((row.get(label_column) or "").strip())
    if not paths:
        raise PredictFramesError(f"{path}: no rows")
    return paths, labels


def predict_images(run: FramesRun, images: list[Path], top_k: int, batch_size: int = 64
                   ) -> list[tuple[list[tuple[str, float]], str]]:
    """Per image: ([(class, probability)] of the ``top_k`` best, highest first; error "")
    or ([], one-line reason) when it cannot be read."""
    import torch

    from frames.model import prepare, read_image, to_input

    a = run.model.args
    k = min(top_k, len(run.classes))
    out: list[tuple[list[tuple[str, float]], str]] = [([], "")] * len(images)
    for b in range(0, len(images), batch_size):
        good, arrays = [], []
        for i in range(b, min(b + batch_size, len(images))):
            try:
                arrays.append(prepare(read_image(images[i]), a.short_side, a.crop_size))
                good.append(i)
            except ValueError as e:
                out[i] = ([], str(e).splitlines()[0])
        if not good:
            continue
        with torch.no_grad():
            probs = run.model(to_input(np.stack(arrays), a.mean, a.std)).softmax(dim=1)
        top = torch.topk(probs, k, dim=1)
        for j, i in enumerate(good):
            out[i] = ([(run.classes[c], float(p)) for p, c in
                       zip(top.values[j].tolist(), top.indices[j].tolist())], "")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    import torch

    from frames.config import PredictFramesConfig
    from pipeline.atomic import write_atomic
    from pipeline.config import load_stage_config
    from pipeline.runtime import resolve_threads

    cfg = load_stage_config(PredictFramesConfig, "predict_frames", args.config, args.overrides)
    if not cfg.csv:
        log.error("predict-frames: give the CSV of image paths: csv=FILE column=Path")
        return 2
    if cfg.num_threads != 0:
        torch.set_num_threads(resolve_threads(cfg.num_threads, 0, "[predict_frames] num_threads"))
    src = Path(cfg.csv)
    out = Path(cfg.out) if cfg.out else src.with_name(f"{src.stem}.top{cfg.top_k}.csv")
    try:
        if out.resolve() == src.resolve():
            raise PredictFramesError(f"out={out} is the input CSV; choose another file")
        run = load_frames_run(resolve_run(cfg.run, cfg.runs_dir))
        paths, labels = read_image_column(src, cfg.column, cfg.label_column)
    except (PredictFramesError, OSError) as e:
        log.error("predict-frames: %s", str(e).splitlines()[0])
        return 2
    except ValueError as e:  # a checkpoint that cannot be read
        log.error("predict-frames: %s", str(e).splitlines()[0])
        return 2
    images = [Path(p) if Path(p).is_absolute() else src.parent / p for p in paths]
    log.info("scoring %d image(s) of %s with %s", len(images), src, run.path)
    results = predict_images(run, images, cfg.top_k, cfg.batch_size)
    k = min(cfg.top_k, len(run.classes))
    header = [cfg.column] + (["label"] if cfg.label_column else [])
    for i in range(1, k + 1):
        header += [f"top{i}", f"score{i}"]
    header.append("error")
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    hits1 = hitsk = scored = 0
    for j, (p, (top, err)) in enumerate(zip(paths, results)):
        row = [p] + ([labels[j]] if cfg.label_column else [])
        for i in range(k):
            row += [top[i][0], f"{top[i][1]:.4f}"] if top else ["", ""]
        row.append(err)
        w.writerow(row)
        if top:
            scored += 1
            if cfg.label_column:
                names = [c for c, _ in top]
                hits1 += names[0] == labels[j]
                hitsk += labels[j] in names
    try:
        write_atomic(out, buf.getvalue())
    except OSError as e:
        log.error("predict-frames: %s", str(e).splitlines()[0])
        return 2
    failed = len(paths) - scored
    if failed:
        log.warning("%d image(s) could not be read; their rows name why (column 'error')", failed)
    line = f"{out}: top-{k} classes of {scored} image(s) ({failed} unreadable) by {run.path}"
    if cfg.label_column and scored:
        line += f"; top-1 {hits1 / scored:.4f}, top-{k} {hitsk / scored:.4f} against '{cfg.label_column}'"
    sys.stdout.write(line + "\n")
    return 1 if failed else 0
