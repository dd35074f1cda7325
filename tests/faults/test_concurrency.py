"""Issue 7 part 3: two `cprclip extract` runs on one output, and readers during a write.

The second run refuses with one line naming the file and the pid holding it (an flock that
dies with its process, so a killed run leaves no stale lock); the first finishes untouched.
Readers only ever open final files, which appear by rename, so they never see a partial one."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from fault_media import ROOT, TINY_EXTRACT, good, no_traceback, row, write_config, write_manifest
from pipeline.cli import main
from pipeline.features import FeatureStoreError, read_features, shard_dir

ENV = dict(os.environ, OMP_NUM_THREADS="1", CPRCLIP_NO_PROGRESS="1", PYTHONPATH=str(ROOT))


def _dataset(root, n):
    for i in range(n):
        good(root / "videos" / f"v{i:02d}.mp4", seed=i, n=10)
    m = write_manifest(root / "manifest.csv",
                       [row(f"v{i:02d}", f"videos/v{i:02d}.mp4") for i in range(n)])
    return write_config(root, m)


def test_second_extract_on_the_same_output_refuses_and_readers_see_only_complete_files(
        tmp_path, capsys):
    n = 16
    cfg = _dataset(tmp_path, n)
    args = [*TINY_EXTRACT, "modalities=rgb", "rows_per_shard=1", "batch_videos=1"]
    assert main(["extract", "--config", str(cfg), *args, f"features_dir={tmp_path / 'ref'}"]) == 0
    ref = read_features(tmp_path / "ref" / "tiny" / "tsn_r18-rgb-4seg.h5")
    capsys.readouterr()

    out = tmp_path / "features" / "tiny" / "tsn_r18-rgb-4seg.h5"
    first = subprocess.Popen([sys.executable, "-m", "pipeline", "extract", "--config", str(cfg),
                              *args], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    shards = shard_dir(out)
    t0 = time.time()
    while time.time() - t0 < 120 and first.poll() is None and not (
            shards.is_dir() and any(shards.glob("shard-*.h5"))):
        time.sleep(0.005)
    assert first.poll() is None, "the first run ended too soon"
    # 1. The second run refuses at once.
    assert main(["extract", "--config", str(cfg), *args]) == 2
    err = capsys.readouterr().err
    assert f"{out}: another 'cprclip extract' (pid {first.pid}) is writing it" in err, err
    no_traceback(err)
    # 2. Readers polling meanwhile see complete shards and files, or none.
    seen = 0
    while first.poll() is None:
        for s in list(shards.glob("shard-*.h5")) + ([out] if out.exists() else []):
            try:
                fs = read_features(s)
            except FeatureStoreError as e:  # consolidated and removed between glob and open
                assert "not found" in str(e), e
                continue
            assert len(fs) >= 1 and np.isfinite(fs.features).all()
            seen += 1
        time.sleep(0.01)
    assert first.wait() == 0, first.stderr.read().decode()[-2000:]
    assert seen > 0
    got = read_features(out)
    assert list(got.video_id) == list(ref.video_id)
    np.testing.assert_allclose(got.features, ref.features, rtol=1e-4, atol=1e-5)
    # 3. The lock went with the first run: a rerun works and finds everything done.
    assert main(["extract", "--config", str(cfg), *args]) == 0
    assert f"0 extracted, {n} already done" in capsys.readouterr().out


def test_second_train_on_the_same_run_refuses(tmp_path, capsys):
    """Issue 16, item 5: before, two trains on one run had no lock; the first crashed and the
    run's metrics.jsonl mixed both. Now the second refuses in one line naming the run and the
    first one's pid, and the first finishes with one row per epoch."""
    import json

    sys.path.insert(0, str(ROOT / "tests" / "faults"))
    from test_interrupt import _features

    _features(tmp_path / "features")
    cfg = write_config(tmp_path)
    args = ["train", "--config", str(cfg), "backbone=toy", "segments=4", "modalities=rgb",
            "models=bce", "epochs=120", "imagine_per_epoch=64", "batch_size=16", "val_every=1",
            "hidden_dim=16", "device=cpu", "num_threads=1", "run_name=r"]
    run = tmp_path / "runs" / "r"
    first = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while time.time() - t0 < 120 and first.poll() is None and not (
            (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size):
        time.sleep(0.005)
    assert first.poll() is None, "the first train ended too soon"
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    no_traceback(err)
    errors = [ln for ln in err.splitlines() if " ERROR " in ln]
    assert len(errors) == 1, err
    assert f"run {run}: another 'cprclip train' (pid {first.pid}) is training it" in errors[0]
    assert first.wait() == 0, first.stderr.read().decode()[-2000:]
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 121))


def test_lock_of_a_killed_run_does_not_block(tmp_path, capsys):
    import signal

    cfg = _dataset(tmp_path, 6)
    args = [*TINY_EXTRACT, "modalities=rgb", "rows_per_shard=1", "batch_videos=1"]
    out = tmp_path / "features" / "tiny" / "tsn_r18-rgb-4seg.h5"
    p = subprocess.Popen([sys.executable, "-m", "pipeline", "extract", "--config", str(cfg),
                          *args], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    lock = out.with_name(f".{out.name}.r0.lock")
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None and not lock.exists():
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert main(["extract", "--config", str(cfg), *args]) == 0
    assert len(read_features(out)) == 6
