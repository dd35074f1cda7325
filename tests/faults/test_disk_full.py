"""Issue 7 part 1, environment: the disk fills up while extract or train writes. Simulated with a real
size-limited file system (a small tmpfs, mounted here as root; skipped where mount is not
permitted). Outcome: one line naming the file and "No space left on device"; no file that looks
complete; every shard closed before the disk filled survives and a rerun completes the work."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from fault_media import TINY_EXTRACT, good, no_traceback, row, write_config, write_manifest
from pipeline.cli import main
from pipeline.features import read_features, shard_dir


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


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
