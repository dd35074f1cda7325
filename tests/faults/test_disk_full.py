"""Issue 7 part 1, environment: the disk fills up while extract, flow, finetune, train or eval
writes. Simulated with a real size-limited file system (a small tmpfs, mounted here as root;
skipped where mount is not permitted). Outcome: one line naming the file and "No space left on
device"; no file that looks complete; everything finished before the disk filled survives and a
rerun completes the work."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fault_media import ROOT, TINY_EXTRACT, good, no_traceback, row, write_config, write_manifest
from pipeline.cli import main
from pipeline.features import read_features, shard_dir


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size, at=None)`` mounts a tmpfs of ``size`` ("1m", "200m") at ``at`` (default: a
    new folder in tmp_path) and returns its folder; unmounted after the test. Skips the test
    where mount is not permitted."""
    mounted = []

    def mount(size: str, at: Path | None = None) -> Path:
        mnt = at or tmp_path / f"small{len(mounted)}"
        mnt.mkdir(parents=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
        mounted.append(mnt)
        return mnt

    try:
        yield mount
    finally:
        for mnt in mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_fs(tmpfs):
    return tmpfs("1m")


def fill(mnt: Path, free: int) -> Path:
    """A filler file that leaves about ``free`` bytes of ``mnt`` free; delete it for space."""
    st = os.statvfs(mnt)
    filler = mnt / "filler"
    left = st.f_bavail * st.f_frsize - free
    with filler.open("wb") as f:
        while left > 0:
            n = min(left, 1 << 24)
            f.write(b"\0" * n)
            left -= n
    return filler


def one_error_line(err: str, text: str = "No space left on device") -> str:
    """The single stderr line that has ``text``; fails if there are none or several."""
    lines = [ln for ln in err.splitlines() if text in ln]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def fails_with_one_line(capsys, args: list[str], rc: int) -> str:
    """Run ``cprclip args`` on a full disk: exit code ``rc``, no traceback, and exactly one
    stderr line about the full disk, which is returned for the caller's checks."""
    capsys.readouterr()  # only this run's output
    got = main(args)
    err = capsys.readouterr().err
    assert got == rc, err
    no_traceback(err)
    return one_error_line(err)


def test_disk_full_during_extract(tmp_path, small_fs, capsys):
    n = 8
    for i in range(n):
        good(tmp_path / "videos" / f"v{i:02d}.mp4", seed=i, n=10)
    m = write_manifest(tmp_path / "manifest.csv",
                       [row(f"v{i:02d}", f"videos/v{i:02d}.mp4") for i in range(n)])
    cfg = write_config(tmp_path, m)
    args = [*TINY_EXTRACT, "modalities=rgb", "rows_per_shard=1", "batch_videos=1"]
    assert main(["extract", "--config", str(cfg), *args, f"features_dir={tmp_path / 'ref'}"]) == 0
    ref = read_features(tmp_path / "ref" / "tiny" / "tsn_r18-rgb-4seg.h5")
    capsys.readouterr()

    # Leave room for a few shards only (each is ~15 KB: 4 x 512 float32 plus HDF5 overhead).
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024 - 80 * 1024))
    feats = small_fs / "features"
    out = feats / "tiny" / "tsn_r18-rgb-4seg.h5"
    rc = main(["extract", "--config", str(cfg), *args, f"features_dir={feats}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "No space left on device" in err and str(feats / "tiny") in err, err
    no_traceback(err)
    assert not out.exists()  # nothing that looks complete
    assert not list(feats.rglob("*.tmp"))  # no half-written temporaries left
    kept = sorted(shard_dir(out).glob("shard-*.h5"))
    assert 1 <= len(kept) < n
    for s in kept:  # every shard on disk is complete and readable
        assert len(read_features(s)) == 1

    filler.unlink()  # space again: the rerun resumes and gives the same features
    assert main(["extract", "--config", str(cfg), *args, f"features_dir={feats}"]) == 0
    assert f"{len(kept)} already done" in capsys.readouterr().out
    got = read_features(out)
    assert list(got.video_id) == list(ref.video_id)
    np.testing.assert_allclose(got.features, ref.features, rtol=1e-4, atol=1e-5)


def test_disk_full_during_train(tmp_path, small_fs, capsys):
    """runs_dir on the full tmpfs: train stops with one line; no checkpoint that looks
    finished, no temporaries; after space is freed, resume=true finishes the run."""
    from test_interrupt import _features

    _features(tmp_path / "features")
    cfg = write_config(tmp_path)
    runs = small_fs / "runs"
    base = ["--config", str(cfg), "backbone=toy", "segments=4", "modalities=rgb",
            "models=cpr_clip_plus", "epochs=4", "text_encoder=test_hash",
            "imagine_per_epoch=16", "batch_size=16", "val_every=2", "hidden_dim=16",
            "device=cpu", f"runs_dir={runs}", f"text_cache_dir={tmp_path / 'cache'}"]
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024 - 24 * 1024))
    rc = main(["train", *base])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"train: [Errno 28] No space left on device: '{runs / 'cpr_clip_plus'}/" in err, err
    no_traceback(err)
    run = runs / "cpr_clip_plus"
    assert not (run / "checkpoint.safetensors").exists()
    assert not [f for f in run.rglob("*") if f.name.endswith(".tmp")]
    filler.unlink()
    assert main(["train", *base, "resume=true"]) == 0
    assert (run / "checkpoint.safetensors").exists()


def test_disk_full_during_flow(tmp_path, tmpfs, capsys):
    """flow_dir on the full tmpfs: the run stops at the first video that does not fit, with one
    line naming it; every flow video with a final name is complete, the one being written is
    removed, and the flow index names only complete flow videos. After space is freed the rerun
    reuses them, computes the rest, and the flow equals a reference run's."""
    from pipeline.manifest import load_manifest
    from test_interrupt import FLOW_ARGS as flow_args
    from test_interrupt import _flow_datasets, _flow_frames

    n = 8
    ref_m = _flow_datasets(tmp_path, n)
    capsys.readouterr()

    m = tmp_path / "run" / "manifest.csv"
    cfg = write_config(tmp_path / "run", m)
    disk = tmpfs("1m", at=tmp_path / "run" / "disk")  # inside the dataset folder
    flow_dir = disk / "flow"
    args = ["flow", "--config", str(cfg), *flow_args, f"flow_dir={flow_dir}"]
    filler = fill(disk, 40 * 1024)  # room for ~3 flow videos of ~12 kB
    line = fails_with_one_line(capsys, args, 2)
    assert f"flow: {flow_dir}/v" in line and ".mp4: cannot write (No space left on device)" \
        in line, line
    assert not list(flow_dir.rglob("*.tmp"))
    assert not Path(line.split("flow: ", 1)[1].split(": cannot write")[0]).exists()
    done = sorted(flow_dir.glob("v*.mp4"))
    assert 1 <= len(done) < n
    for f in done:  # whatever has a final name is complete: all 23 flow frames
        assert _flow_frames(f).shape[0] == 23, f
    # The flow index names only complete flow videos (all of them when it still fits on the
    # disk; a rerun reuses them either way), and the manifest is untouched.
    indexed = {r.video_id: r.flow for r in load_manifest(m, flow_dir=flow_dir) if r.flow}
    assert indexed.items() <= {f.stem: f for f in done}.items()
    assert all(r.flow is None for r in load_manifest(m))

    filler.unlink()  # space again: the rerun computes the rest and equals the reference
    assert main(args) == 0
    assert f"{n - len(done)} computed" in capsys.readouterr().out
    got = {r.video_id: r.flow for r in load_manifest(m, flow_dir=flow_dir)}
    for r in load_manifest(ref_m):
        np.testing.assert_array_equal(_flow_frames(got[r.video_id]), _flow_frames(r.flow))


def test_disk_full_during_finetune(tmp_path, tmpfs, capsys):
    """finetune_dir on a tmpfs with room for one training state (tsn_r18: ~90 MB) but not two: the
    state of epoch 2 does not fit. One line names the file; no checkpoint, no temporaries; the
    state of epoch 1 survives and, after space is freed, a rerun resumes from it and finishes."""
    import sys

    import torch

    if str(ROOT / "tests" / "finetune") not in sys.path:  # its helpers, not copies of them
        sys.path.insert(0, str(ROOT / "tests" / "finetune"))
    from finetune_helpers import make_dataset
    from test_finetune_cli import TINY

    manifest = make_dataset(tmp_path / "data")
    disk = tmpfs("200m")
    runs = disk / "finetuned"
    run = runs / "synthetic" / "tsn_r18-rgb"  # <finetune_dir>/<[common] dataset>/
    args = ["finetune", "--config", "configs/synthetic.toml", f"manifest={manifest}",
            f"finetune_dir={runs}", "modalities=rgb", *TINY,
            "init_checkpoint=none"]  # synthetic.toml's "pretrained": tsn_r18 ships none
    filler = fill(disk, 150 << 20)
    line = fails_with_one_line(capsys, args, 2)
    assert f"finetune: [Errno 28] No space left on device: '{run / 'state.pt'}'" in line, line
    assert not (run / "checkpoint.safetensors").exists()  # nothing that looks finished
    assert not [f for f in runs.rglob("*") if f.name.endswith(".tmp")]
    assert torch.load(run / "state.pt", weights_only=True)["epoch"] == 1  # epoch 1 is kept

    filler.unlink()  # space again: the rerun resumes after epoch 1 and finishes
    assert main(args) == 0
    assert f"{run}: resuming after epoch 1 of 2" in capsys.readouterr().err
    assert (run / "checkpoint.safetensors").is_file()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_disk_full_during_eval_report(tmp_path, tmpfs, capsys):
    """report_dir on a full tmpfs: eval stops with one line naming the file; every PNG with its
    final name is complete, no report.md / report.html, no temporaries; after space is freed the
    rerun writes the whole report."""
    from test_interrupt import _features

    _features(tmp_path / "features")
    cfg = write_config(tmp_path)
    assert main(["train", "--config", str(cfg), "backbone=toy", "segments=4", "modalities=rgb",
                 "models=cpr_clip_plus", "epochs=2", "text_encoder=test_hash",
                 "imagine_per_epoch=16", "batch_size=16", "val_every=2", "hidden_dim=16",
                 "device=cpu", f"text_cache_dir={tmp_path / 'cache'}"]) == 0
    disk = tmpfs("4m")
    report = disk / "report"
    args = ["eval", "--config", str(cfg), f"report_dir={report}"]
    filler = fill(disk, 100 * 1024)  # the report is ~1 MB: 6 PNGs of 25-100 kB, HTML ~0.5 MB
    line = fails_with_one_line(capsys, args, 1)
    assert f"eval: [Errno 28] No space left on device: '{report}/" in line, line
    assert not (report / "report.md").exists() and not (report / "report.html").exists()
    assert not list(report.glob("*.tmp"))
    assert not Path(line.rsplit("'", 2)[1]).exists()  # the file being written is gone
    pngs = sorted(report.glob("*.png"))
    assert 1 <= len(pngs) < 6, pngs
    for p in pngs:  # a PNG with its final name is whole: it ends with the IEND chunk
        assert p.read_bytes().endswith(b"IEND\xaeB`\x82"), p

    filler.unlink()  # space again: the rerun writes the report
    assert main(args) == 0
    assert (report / "report.md").is_file()
    assert "</html>" in (report / "report.html").read_text()
    assert len(list(report.glob("*.png"))) == 6
