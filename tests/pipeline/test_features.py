import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from pipeline.features import (SCHEMA_VERSION, FeatureStoreError, ShardWriter, consolidate,
                               done_video_ids, join, read_features, shard_dir)
from pipeline.taxonomy import multi_hot

ATTRS = dict(backbone="tsn_r18", modality="rgb", segments=3, checkpoint_sha256="abc",
             config_json={"a": 1})


def write_rows(path, ids, dim=4, rows_per_shard=2, seed=0):
    rng = np.random.default_rng(seed)
    w = ShardWriter(path, ATTRS, rows_per_shard=rows_per_shard)
    feats = {}
    for i, vid in enumerate(ids):
        f = rng.normal(size=(3, dim)).astype(np.float32)
        feats[vid] = f
        w.add(vid, f"take{i // 2}", 1 + i % 2, "p1", "train", multi_hot([i % 14]), f)
    w.close()
    return feats


def test_round_trip_sorted_and_joined(tmp_path):
    path = tmp_path / "f.h5"
    feats = write_rows(path, ["v3", "v1", "v2", "v0", "v4"])
    assert done_video_ids(path) == {"v0", "v1", "v2", "v3", "v4"}
    assert not path.exists()  # only shards so far: readers never see a partial file
    consolidate(path)
    assert not shard_dir(path).exists()
    fs = read_features(path, expect={"backbone": "tsn_r18", "dim": 4, "segments": 3})
    assert fs.video_id.tolist() == ["v0", "v1", "v2", "v3", "v4"]
    for i, vid in enumerate(fs.video_id):
        np.testing.assert_array_equal(fs.features[i], feats[vid])
    assert fs.attrs["schema_version"] == SCHEMA_VERSION and '"a": 1' in fs.attrs["config_json"]
    other = fs.select(np.array([4, 0, 2]))
    a, b = join(other, fs)
    assert a.video_id.tolist() == b.video_id.tolist() == ["v4", "v0", "v2"]
    np.testing.assert_array_equal(a.features, b.features)


def test_rerun_appends_to_consolidated_file(tmp_path):
    path = tmp_path / "f.h5"
    write_rows(path, ["a", "b"])
    consolidate(path)
    write_rows(path, ["c"])
    consolidate(path)
    assert read_features(path).video_id.tolist() == ["a", "b", "c"]


def test_reader_checks(tmp_path):
    path = tmp_path / "f.h5"
    write_rows(path, ["a", "b"])
    consolidate(path)
    with pytest.raises(FeatureStoreError, match="dim is 4, expected 512"):
        read_features(path, expect={"dim": 512})
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(FeatureStoreError, match="schema_version 99"):
        read_features(path)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f["features"][0, 0, 0] = np.nan
    with pytest.raises(FeatureStoreError, match="NaN/Inf"):
        read_features(path)
    with pytest.raises(FeatureStoreError, match="not found"):
        read_features(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(FeatureStoreError, match="not a readable HDF5"):
        read_features(tmp_path / "junk.h5")


def test_writer_rejects_bad_rows(tmp_path):
    w = ShardWriter(tmp_path / "f.h5", ATTRS)
    with pytest.raises(FeatureStoreError, match="NaN or Inf"):
        w.add("x", "t", 1, "p", "train", multi_hot([1]), np.full((3, 4), np.inf))
    w.add("y", "t", 1, "p", "train", multi_hot([1]), np.zeros((3, 4)))
    with pytest.raises(FeatureStoreError, match="differ from earlier rows"):
        w.add("z", "t", 1, "p", "train", multi_hot([1]), np.zeros((3, 5)))


def test_killed_writer_leaves_nothing_that_looks_complete(tmp_path):
    """SIGKILL a writer mid-stream: every shard on disk is complete, the final file is absent,
    and a rerun that skips done ids plus consolidation gives every row exactly once."""
    path = tmp_path / "f.h5"
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        sys.path.insert(0, {str(os.getcwd())!r})
        from pipeline.features import ShardWriter
        from pipeline.taxonomy import multi_hot
        w = ShardWriter({str(path)!r}, dict(backbone="b", modality="rgb", segments=2,
                        checkpoint_sha256=""), rows_per_shard=3)
        for i in range(10_000):
            w.add(f"v{{i:05d}}", "t", 1, "p", "train", multi_hot([1]),
                  np.full((2, 256), i, np.float32))
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(40):  # let it write a dozen shards
        proc.stdout.readline()
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not path.exists()
    done = done_video_ids(path)  # opens every shard: a partial one would raise here
    assert len(done) >= 30 and len(done) % 3 == 0
    w = ShardWriter(path, dict(backbone="b", modality="rgb", segments=2, checkpoint_sha256=""))
    for i in range(60):
        vid = f"v{i:05d}"
        if vid not in done:
            w.add(vid, "t", 1, "p", "train", multi_hot([1]), np.full((2, 256), i, np.float32))
    w.close()
    fs = read_features(consolidate(path))
    assert fs.video_id.tolist()[:60] == [f"v{i:05d}" for i in range(60)]
    np.testing.assert_array_equal(fs.features[:60, 0, 0], np.arange(60))
    assert not list(tmp_path.glob("**/*.tmp"))
