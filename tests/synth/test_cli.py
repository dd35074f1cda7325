"""`cprclip synth` end to end on a tiny dataset: files, manifest, reruns, atomic writes."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main as cli_main
from pipeline.config import ConfigError
from pipeline.manifest import load_manifest
from pipeline.taxonomy import is_valid_label_set
from synth.config import SynthConfig
from synth.render import derive_seed, render_clip
from synth.runner import generate

TINY = ["participants=2", "held_out=1", "frames=12", "resolution=32x24", "n_double=2",
        "n_triple=1", "n_quad=1", "views=2"]


def _tiny(tmp_path: Path, **kw) -> SynthConfig:
    values = dict(dataset="tiny", manifest=str(tmp_path / "tiny" / "manifest.csv"),
                  participants=2, held_out=1, frames=12, resolution="32x24", n_double=2,
                  n_triple=1, n_quad=1, views=2, workers=1)
    values.update(kw)
    return SynthConfig(**values)


def test_cli_writes_a_dataset_that_manifest_check_accepts(tmp_path, monkeypatch):
    monkeypatch.setenv("CPRCLIP_NO_PROGRESS", "1")
    manifest = tmp_path / "tiny" / "manifest.csv"
    rc = cli_main(["synth", "dataset=tiny", f"manifest={manifest}", "workers=2", *TINY])
    assert rc == 0
    assert cli_main(["manifest", "check", str(manifest)]) == 0
    rows = load_manifest(manifest)
    # 14 train + 14 val singles + 4 composites, 2 views each.
    assert Counter(r.split for r in rows) == {"train": 28, "val": 28, "test": 8}
    assert {r.participant for r in rows if r.split == "train"} == {"p1"}
    assert {r.participant for r in rows if r.split != "train"} == {"p2"}
    assert all(r.is_single for r in rows if r.split != "test")
    assert all(len(r.labels) >= 2 and is_valid_label_set(r.labels)
               for r in rows if r.split == "test")
    by_take = Counter(r.take_id for r in rows)
    assert set(by_take.values()) == {2}
    assert all(r.path.parent == manifest.parent / "videos" for r in rows)
    assert not list(manifest.parent.rglob("*.tmp"))
    assert (manifest.parent / "synth.json").is_file()


def test_video_holds_the_rendered_frames(tmp_path):
    """The encoded file decodes to (nearly) what render_clip returns for that take and view."""
    import decord

    cfg = _tiny(tmp_path, max_takes=1, resolution="64x48", crf=0)
    rows = load_manifest(generate(cfg, show_progress=False))
    row = rows[1]
    vr = decord.VideoReader(str(row.path))
    decoded = vr.get_batch(list(range(len(vr)))).asnumpy()
    expected = render_clip(row.labels, 0, row.view, derive_seed(0, "take", row.take_id),
                           (64, 48), 12, 25)
    assert decoded.shape == expected.shape
    # crf=0 is lossless in YUV; the RGB->YUV420->RGB round trip leaves small errors only.
    assert np.abs(decoded.astype(int) - expected).mean() < 6
    other = render_clip(row.labels, 0, row.view, derive_seed(1, "take", row.take_id),
                        (64, 48), 12, 25)
    assert np.abs(decoded.astype(int) - other).mean() > 10


def test_rerun_skips_existing_videos(tmp_path):
    cfg = _tiny(tmp_path, max_takes=3)
    manifest = generate(cfg, show_progress=False)
    videos = sorted((manifest.parent / "videos").glob("*.mp4"))
    assert len(videos) == 6
    stamps = {p: p.stat().st_mtime_ns for p in videos}
    gone = videos[2]
    gone.unlink()
    # A stale half-written file from a killed run is simply overwritten.
    gone.with_name(gone.name + ".tmp").write_bytes(b"junk")
    os.utime(videos[0], ns=(1, 1))
    stamps[videos[0]] = videos[0].stat().st_mtime_ns
    generate(cfg, show_progress=False)
    assert gone.is_file() and gone.stat().st_size > 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != gone)
    assert not list(manifest.parent.rglob("*.tmp"))
    assert len(load_manifest(manifest)) == 6


def test_rerun_with_another_config_is_refused(tmp_path):
    generate(_tiny(tmp_path, max_takes=1), show_progress=False)
    with pytest.raises(ConfigError, match="frames"):
        generate(_tiny(tmp_path, max_takes=1, frames=14), show_progress=False)
    # workers and max_takes do not change the videos, so they may differ.
    generate(_tiny(tmp_path, max_takes=2, workers=2), show_progress=False)


def test_failed_encode_leaves_no_partial_files(tmp_path, monkeypatch):
    import pipeline.ffmpeg

    monkeypatch.setattr(pipeline.ffmpeg, "ffmpeg_exe", lambda: "false")
    cfg = _tiny(tmp_path, max_takes=1)
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        generate(cfg, show_progress=False)
    root = tmp_path / "tiny"
    assert not list(root.rglob("*.mp4")) and not list(root.rglob("*.tmp"))
    assert not (root / "manifest.csv").exists()
