"""Resume: stop after epoch k, rerun, and get the weights of an uninterrupted run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from finetune.config import FinetuneConfig
from finetune.data import ClipDataset, FrameSource, single_class_records
from finetune.loop import run_finetune


def _cfg(manifest, runs, **kw):
    base = dict(manifest=str(manifest), finetune_dir=str(runs), backbone="tsn_r18", modalities=("rgb",),
                segments=4, short_side=48, crop_size=32, epochs=3, batch_size=4, lr=0.02,
                workers=0)
    base.update(kw)
    return FinetuneConfig(**base)


def test_interrupted_then_resumed_equals_uninterrupted(tiny_manifest, tmp_path):
    # dropout stays on (TSN's 0.4): the saved torch RNG state must be restored for this to hold
    full = run_finetune(_cfg(tiny_manifest, tmp_path / "a"))[0]
    stopped = run_finetune(_cfg(tiny_manifest, tmp_path / "b"), stop_after_epoch=1)[0]
    assert stopped.status == "stopped" and not stopped.checkpoint.exists()
    assert torch.load(stopped.checkpoint.parent / "state.pt", weights_only=True)["epoch"] == 1
    resumed = run_finetune(_cfg(tiny_manifest, tmp_path / "b"))[0]
    assert resumed.status == "trained" and resumed.epochs_run == 2
    a, b = load_file(str(full.checkpoint)), load_file(str(resumed.checkpoint))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    rows = lambda r: [json.loads(x) for x in (r.checkpoint.parent / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    ra, rb = rows(full), rows(resumed)
    assert [r["epoch"] for r in rb] == [1, 2, 3]
    np.testing.assert_allclose([r["train/loss"] for r in rb], [r["train/loss"] for r in ra], rtol=1e-5)


def test_changed_config_starts_over(tiny_manifest, tmp_path):
    run_finetune(_cfg(tiny_manifest, tmp_path, epochs=2), stop_after_epoch=1)
    res = run_finetune(_cfg(tiny_manifest, tmp_path, epochs=2, lr=0.05))[0]
    assert res.status == "trained" and res.epochs_run == 2


def test_resume_rule_true_false_and_a_half_written_metrics_line(tiny_manifest, tmp_path):
    """The run convention of pipeline/runs.py, as finetune applies it."""
    from pipeline.runs import ResumeError

    stopped = run_finetune(_cfg(tiny_manifest, tmp_path, epochs=3, lr=0.05),
                           stop_after_epoch=1)[0]
    run = stopped.checkpoint.parent
    # resume=true with another config: an error naming the key, and nothing is touched
    state = (run / "state.pt").read_bytes()
    with pytest.raises(ResumeError, match="config.lr"):
        run_finetune(_cfg(tiny_manifest, tmp_path, epochs=3, lr=0.02, resume=True))
    assert (run / "state.pt").read_bytes() == state
    # a run killed while appending leaves half a line: a resume drops it with the later rows
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "train/lo')
    res = run_finetune(_cfg(tiny_manifest, tmp_path, epochs=3, lr=0.05, resume=True),
                       stop_after_epoch=2)[0]
    assert res.status == "stopped" and res.epochs_run == 1  # resumed after epoch 1
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2]
    # resume=false starts over although the state matches
    res = run_finetune(_cfg(tiny_manifest, tmp_path, epochs=3, lr=0.05, resume=False))[0]
    assert res.status == "trained" and res.epochs_run == 3
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2, 3]


def test_disk_cache_gives_the_same_clips_as_direct_decoding(tiny_manifest, tmp_path):
    from pipeline.manifest import load_manifest

    recs = single_class_records(load_manifest(tiny_manifest), "train")[:3]
    for modality in ("rgb", "flow"):
        cfg = _cfg(tiny_manifest, tmp_path, modalities=(modality,))
        for train in (True, False):
            direct = ClipDataset(recs, cfg, modality, train, FrameSource(modality, 48, "decord", None))
            cached = ClipDataset(recs, cfg, modality, train,
                                 FrameSource(modality, 48, "decord", tmp_path / "cache"))
            for i in range(len(recs)):
                for _ in range(2):  # the second read comes from the .npy cache
                    x, y, j = cached[(2, i)]
                    x0, y0, _ = direct[(2, i)]
                    assert x.dtype == torch.uint8 and x.shape == (4, 32, 32, 3 if modality == "rgb" else 10)
                    assert torch.equal(x, x0) and y == y0 == recs[i].labels[0] and j == i
            if train:  # another epoch, another augmentation
                assert not torch.equal(cached[(3, 0)][0], cached[(2, 0)][0])
