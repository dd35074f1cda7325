"""Broken checkpoints, GENERATED per defect class and per kind of checkpoint (the fault suite of
issue 16): a backbone's weights for extract, a run's weights for eval and predict, a run's resume
state for train, a text model's weights and the prompt-embedding cache for train.

Every case must end in exactly one error line naming the file, no traceback, no payload ever
run (the pickle cases plant one that would create a marker file), and no lost data: nothing
the stage refused is deleted or overwritten, and no half result is written.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from fault_media import TINY_EXTRACT, TRAIN, copy_pipe, no_traceback, one_error_line
from pipeline.cli import main

MARKER = "UNPICKLED_MARKER"


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _r18(seed: int = 1) -> dict[str, torch.Tensor]:
    from extract.backbones import build_recognizer

    return {k: v.contiguous() for k, v in build_recognizer("tsn_r18", "rgb", seed=seed)
            .state_dict().items()}


def _safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    return path


def _cut(path: Path, size: int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:size])
    return path


# A maker gets (folder, marker) and returns the file to use. Shared by every kind below.
Maker = Callable[[Path, Path], Path]
GENERIC: dict[str, Maker] = {
    "empty_file": lambda d, m: _write(d / "w.safetensors", b""),
    "random_bytes": lambda d, m: _write(d / "w.safetensors", np.random.default_rng(0)
                                        .integers(0, 256, 30_000, np.uint8).tobytes()),
    "text_file": lambda d, m: _write(d / "w.safetensors", b"weights: none\n" * 100),
    "pickle_payload": lambda d, m: _pickle(d / "w.safetensors", m),
    "a_folder": lambda d, m: _folder(d / "w.safetensors"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _pickle(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "evil": Payload(marker)}, str(path))
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"")
    return path


def _digest(path: Path) -> str:
    if path.is_dir():
        return "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


# --- a backbone's weights, as extract's checkpoint= ---------------------------------------------

BACKBONE: dict[str, Maker] = {
    **GENERIC,
    "truncated_safetensors": lambda d, m: _cut(_safetensors(d / "w.safetensors", _r18()),
                                               200_000),
    "truncated_pth": lambda d, m: _cut(_torch_save(d / "w.pth", _r18()), 4096),
    "pickle_payload_pth": lambda d, m: _pickle(d / "w.pth", m),
    "pth_holding_a_list": lambda d, m: _torch_save(d / "w.pth", [torch.zeros(3)]),
    "another_architecture": lambda d, m: _safetensors(d / "w.safetensors", {
        "fc.weight": torch.zeros(10, 10), "conv9.bias": torch.zeros(3)}),
    "nan_weights": lambda d, m: _safetensors(d / "w.safetensors", {
        k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v)
        for k, v in _r18().items()}),
}


def _torch_save(path: Path, obj) -> Path:
    torch.save(obj, str(path))
    return path


@pytest.mark.parametrize("case", sorted(BACKBONE))
def test_a_broken_backbone_checkpoint_is_one_line(pipe, tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER
    p = copy_pipe(pipe, tmp_path / "copy")
    ck = BACKBONE[case](tmp_path, marker)
    before = _digest(ck)
    extra = [a for a in TINY_EXTRACT if not a.startswith("checkpoint=")]
    capsys.readouterr()
    rc = main(["extract", "--config", str(p["cfg"]), *extra, "modalities=rgb",
               f"features_dir={tmp_path / 'f2'}", f"checkpoint={ck}"])
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    one_error_line(err, str(ck) if case != "nan_weights" else "NaN")
    assert not marker.exists(), "a pickle payload was executed"
    assert _digest(ck) == before
    assert not (tmp_path / "f2" / "tiny" / "tsn_r18-rgb-4seg.h5").exists()  # no half result


# --- a run's weights, for eval and predict ------------------------------------------------------

def _run_tensors(p: dict) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(p["run"] / "checkpoint.safetensors"))


RUN: dict[str, Callable[[Path, Path, dict], None]] = {
    **{k: (lambda mk: lambda ck, m, p: _replace(ck, mk(ck.parent, m)))(mk)
       for k, mk in GENERIC.items()},
    "truncated": lambda ck, m, p: _cut(ck, ck.stat().st_size // 2) and None,
    "no_tensors_of_the_model": lambda ck, m, p: _safetensors(ck, {"x": torch.zeros(2)}) and None,
    "tensors_of_another_shape": lambda ck, m, p: _safetensors(ck, {
        k: torch.zeros(tuple(s + 1 for s in v.shape)) for k, v in _run_tensors(p).items()})
        and None,
}


def _replace(ck: Path, new: Path) -> None:
    import shutil

    ck.unlink()
    if new.is_dir():
        shutil.move(str(new), str(ck))
    else:
        new.rename(ck)


@pytest.mark.parametrize("case", sorted(RUN))
def test_a_broken_run_checkpoint_is_one_line_in_eval_and_predict(pipe, tmp_path, capsys,
                                                                monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER
    p = copy_pipe(pipe, tmp_path / "copy")
    ck = p["run"] / "checkpoint.safetensors"
    RUN[case](ck, marker, p)
    before = _digest(ck)
    capsys.readouterr()
    for argv in (["eval", "--config", str(p["cfg"]), "--run", "cpr_clip_plus"],
                 ["predict", str(p["video"]), "--run", str(p["run"]), "--threshold", "fixed"]):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc != 0, f"{argv[0]} accepted a broken run checkpoint ({case}):\n{err[-2000:]}"
        one_error_line(err, "checkpoint.safetensors" if case != "tensors_of_another_shape"
                       else "cpr_clip_plus")
    assert not marker.exists(), "a pickle payload was executed"
    assert _digest(ck) == before
    assert not (p["run"] / "metrics.json").exists()  # no half evaluation written


# --- a run's resume state, for train resume=true ------------------------------------------------

RESUME = {k: RUN[k] for k in ("truncated", "random_bytes", "pickle_payload", "empty_file")}


@pytest.mark.parametrize("case", sorted(RESUME))
def test_a_broken_resume_state_is_one_line(pipe, tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER
    p = copy_pipe(pipe, tmp_path / "copy")
    last = p["run"] / "last.safetensors"
    if not last.exists():  # a finished run may have dropped it: make one from the weights
        last.write_bytes((p["run"] / "checkpoint.safetensors").read_bytes())
    RESUME[case](last, marker, p)
    rec = json.loads((p["run"] / "config.json").read_text())
    rec["finished"] = False
    (p["run"] / "config.json").write_text(json.dumps(rec))
    before = {f.name: _digest(f) for f in p["run"].iterdir() if f.is_file()}
    capsys.readouterr()
    rc = main(["train", *TRAIN(p["cfg"], "run_name=cpr_clip_plus", "resume=true")])
    err = capsys.readouterr().err
    assert rc == 1, err[-2000:]
    one_error_line(err, str(last))
    assert not marker.exists(), "a pickle payload was executed"
    assert {f.name: _digest(f) for f in p["run"].iterdir() if f.is_file()} == before


# --- the prompt-embedding cache and a text model's weights, for train ---------------------------

CACHE = {k: RUN[k] for k in ("truncated", "random_bytes", "pickle_payload", "empty_file",
                             "a_folder")}


@pytest.mark.parametrize("case", sorted(CACHE))
def test_a_broken_text_cache_is_one_line_or_rebuilt(pipe, tmp_path, capsys, monkeypatch, case):
    """The cache only saves encoding time: train may rebuild it (saying so, naming the file) or
    refuse it in one line; never a traceback, never an unpickled payload."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER
    p = copy_pipe(pipe, tmp_path / "copy")
    (cache,) = sorted(p["text_cache"].glob("*.safetensors"))
    CACHE[case](cache, marker, p)
    capsys.readouterr()
    rc = main(["train", *TRAIN(p["cfg"], "run_name=again", "epochs=1")])
    err = capsys.readouterr().err
    no_traceback(err)
    assert not marker.exists(), "a pickle payload was executed"
    if rc != 0:
        one_error_line(err, str(cache))
    else:
        assert any(str(cache) in ln for ln in err.splitlines() if " WARNING " in ln), err[-3000:]
        assert (p["root"] / "runs" / "again" / "checkpoint.safetensors").is_file()


@pytest.mark.parametrize("case", ["pickle_payload", "random_bytes"])
def test_broken_text_model_weights_are_one_line(pipe, tmp_path, capsys, monkeypatch, case):
    """open_clip's text tower from a local file (text_pretrained=PATH)."""
    pytest.importorskip("open_clip")
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER
    p = copy_pipe(pipe, tmp_path / "copy")
    w = GENERIC[case](tmp_path, marker).rename(tmp_path / "text.pt")
    capsys.readouterr()
    rc = main(["train", *TRAIN(p["cfg"], "run_name=again", "epochs=1"),
               "text_encoder=open_clip", f"text_pretrained={w}"])
    err = capsys.readouterr().err
    assert rc != 0
    line = one_error_line(err, str(w))
    assert "\x1b[" not in line  # no terminal colour codes
    assert not marker.exists(), "a pickle payload was executed"
    assert not (p["root"] / "runs" / "again" / "checkpoint.safetensors").exists()
