"""Issue 7 part 1 (artifacts) and part 5 (no unpickling): broken feature files, checkpoints and
configs end in one line naming the file or key and the problem."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from fault_media import (TINY_EXTRACT, TRAIN, copy_pipe, good, no_traceback, row, write_config,
                         write_manifest)
from pipeline.cli import main

MARKER_NAME = "UNPICKLED_MARKER"


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def pickle_checkpoint(path: Path, marker: Path) -> Path:
    """A .pth/.safetensors-named file whose unpickling would create ``marker``."""
    import torch

    torch.save({"state_dict": {"w": torch.zeros(1)}, "evil": Payload(str(marker))}, str(path))
    return path


def _copy(pipe, tmp_path) -> dict:
    """A private copy of the run and features, so a test can break them."""
    return copy_pipe(pipe, tmp_path / "copy")


def _rewrite_features(path: Path, fn) -> None:
    with h5py.File(path, "r+") as f:
        fn(f)


def test_feature_file_of_another_schema_version(pipe, tmp_path, capsys):
    p = _copy(pipe, tmp_path)
    _rewrite_features(p["feats"], lambda f: f.attrs.__setitem__("schema_version", 0))
    assert main(["train", *TRAIN(p["cfg"], "run_name=again")]) == 1
    assert main(["eval", "--config", str(p["cfg"]), "--run", "cpr_clip_plus"]) == 1
    err = capsys.readouterr().err
    want = f"{p['feats']}: schema_version 0, this code reads 1; re-extract the features"
    assert err.count(want) == 2, err
    no_traceback(err)


def test_nan_and_inf_features_are_refused_with_the_rows(pipe, tmp_path, capsys):
    p = _copy(pipe, tmp_path)

    def poison(f):
        x = f["features"][()]
        x[0, 1, 2], x[3, 0, 0] = np.nan, np.inf
        f["features"][...] = x

    _rewrite_features(p["feats"], poison)
    ids = sorted(h5py.File(p["feats"], "r")["video_id"].asstr()[()])
    assert main(["train", *TRAIN(p["cfg"], "run_name=again")]) == 1
    assert main(["eval", "--config", str(p["cfg"]), "--run", "cpr_clip_plus"]) == 1
    err = capsys.readouterr().err
    want = f"{p['feats']}: 2 row(s) have NaN/Inf features ({ids[0]}, {ids[3]})"
    assert err.count(want) == 2, err
    assert not (p["root"] / "runs" / "again" / "checkpoint.safetensors").exists()
    no_traceback(err)


def test_features_whose_dimension_differs_from_the_checkpoint(pipe, tmp_path, capsys):
    """The run was trained on D=512 (tsn_r18); the file now holds D=64 rows."""
    p = _copy(pipe, tmp_path)

    def shrink(f):
        x = f["features"][()][..., :64]
        del f["features"]
        f.create_dataset("features", data=x)

    _rewrite_features(p["feats"], shrink)
    assert main(["eval", "--config", str(p["cfg"]), "--run", "cpr_clip_plus"]) == 1
    err = capsys.readouterr().err
    assert ("run cpr_clip_plus: features have D=64 (64), the model was trained on D=512 "
            "((512,))") in err, err
    no_traceback(err)


def test_predict_with_features_of_another_dimension(pipe, tmp_path, capsys):
    """The run records a feature recipe (tsn_r18, D=512); make the recipe say resnet... so the
    re-extracted features have another D: predict says so in one line."""
    p = _copy(pipe, tmp_path)
    rec_path = p["run"] / "config.json"
    rec = json.loads(rec_path.read_text())
    for v in rec["features"].values():
        c = json.loads(v["attrs"]["config_json"])
        c.update(backbone="tsn_r50", crop_size=32)
        v["attrs"]["config_json"] = json.dumps(c)
    rec_path.write_text(json.dumps(rec))
    rc = main(["predict", str(p["video"]), "--run", str(p["run"]), "--threshold", "fixed"])
    err = capsys.readouterr().err
    assert rc == 1 and "D=2048" in err and "D=512" in err, err
    no_traceback(err)


def test_truncated_run_checkpoint(pipe, tmp_path, capsys):
    p = _copy(pipe, tmp_path)
    ck = p["run"] / "checkpoint.safetensors"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    assert main(["eval", "--config", str(p["cfg"]), "--run", "cpr_clip_plus"]) == 1
    assert main(["predict", str(p["video"]), "--run", str(p["run"])]) == 1
    err = capsys.readouterr().err
    want = f"{ck}: not a readable safetensors checkpoint ("
    assert err.count(want) == 2, err
    no_traceback(err)


def test_truncated_backbone_checkpoint(tmp_path, capsys):
    import torch

    from extract.backbones import build_recognizer

    good(tmp_path / "videos" / "a.mp4", n=10)
    m = write_manifest(tmp_path / "manifest.csv", [row("a", "videos/a.mp4")])
    ck = tmp_path / "r18.pth"
    torch.save(build_recognizer("tsn_r18", "rgb", seed=1).state_dict(), str(ck))
    ck.write_bytes(ck.read_bytes()[:4096])
    cfg = write_config(tmp_path, m)
    extra = [a for a in TINY_EXTRACT if not a.startswith("checkpoint=")]
    assert main(["extract", "--config", str(cfg), *extra, "modalities=rgb",
                 f"checkpoint={ck}"]) == 2
    err = capsys.readouterr().err
    assert f"{ck}: not a readable torch checkpoint (" in err, err
    assert not (tmp_path / "features" / "tiny" / "tsn_r18-rgb-4seg.h5").exists()
    no_traceback(err)


def test_pickle_payload_checkpoints_are_refused_and_never_run(pipe, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER_NAME
    p = _copy(pipe, tmp_path)
    # 1. a backbone checkpoint for extract (.pth, torch.load path)
    evil = pickle_checkpoint(tmp_path / "evil.pth", marker)
    extra = [a for a in TINY_EXTRACT if not a.startswith("checkpoint=")]
    rc1 = main(["extract", "--config", str(p["cfg"]), *extra, "modalities=rgb",
                f"features_dir={tmp_path / 'f2'}", f"checkpoint={evil}"])
    # 2. a training run whose checkpoint.safetensors is a pickle
    pickle_checkpoint(p["run"] / "checkpoint.safetensors", marker)
    rc2 = main(["eval", "--config", str(p["cfg"]), "--run", "cpr_clip_plus"])
    rc3 = main(["predict", str(p["video"]), "--run", str(p["run"])])
    # 3. a resume state for train
    pickle_checkpoint(p["run"] / "last.safetensors", marker)
    rec = json.loads((p["run"] / "config.json").read_text())
    rec["finished"] = False
    (p["run"] / "config.json").write_text(json.dumps(rec))
    rc4 = main(["train", *TRAIN(p["cfg"], "run_name=cpr_clip_plus", "resume=true")])
    err = capsys.readouterr().err
    assert not marker.exists(), "a pickle payload was executed"
    assert (rc1, rc2, rc3) == (2, 1, 1), err
    assert f"{evil}: refused: this checkpoint needs unpickling arbitrary Python objects" in err
    assert "\x1b[" not in err  # no terminal colour codes in the message
    assert "checkpoint.safetensors: not a readable safetensors checkpoint" in err, err
    assert rc4 == 1, err
    assert (f"train: {p['run'] / 'last.safetensors'}: not a readable safetensors checkpoint"
            in err), err
    no_traceback(err)
    # The payload is live: plain unpickling (what the stages never do) would run it.
    with open(evil, "rb") as f:
        import torch

        torch.load(f, weights_only=False)
    assert marker.exists()


STAGES = ["synth", "flow", "extract", "finetune", "train", "eval"]
WRONG_TYPE_KEY = {"synth": "seed", "flow": "workers", "extract": "segments", "finetune": "seed",
                  "train": "epochs", "eval": "bce_default_threshold"}


@pytest.mark.parametrize("stage", STAGES)
def test_config_unknown_key_and_wrong_type(stage, tmp_path, capsys):
    assert main([stage, "--config", "configs/synthetic.toml", "no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_key" in err and "valid keys are:" in err, err
    bad = tmp_path / "bad.toml"
    key = WRONG_TYPE_KEY[stage]
    bad.write_text(f"[{stage}]\n{key} = 'lots'\n")
    rc = main([stage, "--config", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad} [{stage}]: key '{key}': expected " in err and "'lots'" in err, err
    typo = tmp_path / "typo.toml"
    typo.write_text(f"[{stage}]\nsegmnets = 8\n")
    assert main([stage, "--config", str(typo)]) == 2
    err = capsys.readouterr().err
    assert f"{typo} [{stage}]: unknown key(s) segmnets; valid keys are:" in err, err
    no_traceback(err)


def test_predict_config_errors(tmp_path, capsys):
    assert main(["predict", "x.mp4", "--config", "configs/synthetic.toml", "--set", "nope=1"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "valid keys are:" in err
    assert main(["predict", "x.mp4", "--config", "configs/synthetic.toml", "--set",
                 "clip_z=high"]) == 2
    assert "key 'clip_z': expected a number, got 'high'" in capsys.readouterr().err


def test_config_toml_that_does_not_parse(tmp_path, capsys):
    bad = tmp_path / "broken.toml"
    bad.write_text("[train\nepochs = 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not valid TOML" in err
    no_traceback(err)


def test_predict_executes_nothing_derived_from_a_file_name(pipe, tmp_path, monkeypatch, capsys):
    """Video names that a shell would run are only file names to the assistant."""
    monkeypatch.chdir(tmp_path)
    names = ["$(touch PWNED1).mp4", "`touch PWNED2`.mp4", "x; touch PWNED3 ;.mp4"]
    for n in names:
        (tmp_path / n).write_bytes(pipe["video"].read_bytes())
    rc = main(["predict", *[str(tmp_path / n) for n in names], "--run", str(pipe["run"]),
               "--threshold", "fixed", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert not list(tmp_path.rglob("PWNED*")) and not list(ROOT_DIR.glob("PWNED*"))
    assert json.loads(out.out)["videos"] == [str(tmp_path / n) for n in names]


ROOT_DIR = Path(__file__).resolve().parents[2]


def test_a_retrained_run_never_serves_the_old_runs_eval(pipe, tmp_path, capsys, monkeypatch):
    """Issue 16, item 4: eval's thresholds.json and metrics.json name the checkpoint they were
    computed for; a retrain replaces the run folder whole, so they go with the old weights, and
    a metrics.json of another checkpoint put back by hand is ignored by predict, with a warning
    (thresholds.json of another checkpoint: refused, evaluate.decide.read_thresholds)."""
    import shutil

    from assist.assistant import _metrics
    from pipeline.provenance import sha256_file

    monkeypatch.chdir(tmp_path)
    p = _copy(pipe, tmp_path)
    assert main(["eval", "--config", str(p["cfg"]), "--run", "cpr_clip_plus"]) == 0
    sha = sha256_file(p["run"] / "checkpoint.safetensors")
    metrics = json.loads((p["run"] / "metrics.json").read_text())
    assert metrics["checkpoint"]["sha256"] == sha
    assert json.loads((p["run"] / "thresholds.json").read_text())["checkpoint"]["sha256"] == sha
    assert _metrics(p["run"]) is not None
    shutil.copy(p["run"] / "metrics.json", tmp_path / "old_metrics.json")

    capsys.readouterr()
    assert main(["train", *TRAIN(p["cfg"], "lr=0.005")]) == 0
    assert sha256_file(p["run"] / "checkpoint.safetensors") != sha
    assert not (p["run"] / "metrics.json").exists()
    assert not (p["run"] / "thresholds.json").exists()
    shutil.copy(tmp_path / "old_metrics.json", p["run"] / "metrics.json")
    capsys.readouterr()
    assert _metrics(p["run"]) is None
    assert "was made for checkpoint sha256" in capsys.readouterr().err
