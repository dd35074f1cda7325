"""The decode loader: the videos of one model batch are decoded by several workers at once."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from extract import runner
from pipeline.manifest import VideoRecord


def _fake_views(cfg, modality, path, flow):
    if Path(path).name.startswith("bad"):
        raise runner.VideoFailure("cannot decode")
    # the decoding process's pid, and the video's number, as the "frames"
    return np.array([os.getpid(), int(Path(path).stem[1:])], dtype=np.int64)


def test_one_batch_is_decoded_by_several_workers(monkeypatch):
    monkeypatch.setattr(runner, "video_views", _fake_views)  # the workers fork with it
    records = [VideoRecord(f"v{i}", Path(f"{'bad' if i == 5 else 'v'}{i}.mp4"), f"t{i}", 1,
                           "p1", "test", (0,), None) for i in range(7)]
    cfg = runner.ExtractConfig(dataset="x", manifest="m.csv", workers=2, batch_videos=4)
    batches = list(runner.decode_batches(cfg, "rgb", records))
    assert [len(g) + len(f) for g, _, f in batches] == [4, 3]
    good = [i for g, _, _ in batches for i in g]
    assert good == [0, 1, 2, 3, 4, 6]  # in order; the bad one reported, not lost
    assert batches[1][2] == [(5, "cannot decode")]
    first = batches[0][1].numpy()
    assert list(first[:, 1]) == [0, 1, 2, 3]
    assert len(set(first[:, 0])) == 2  # both workers decoded videos of the first batch
    assert os.getpid() not in set(first[:, 0])
