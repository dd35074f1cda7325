"""`cprclip flow` and `cprclip extract` end to end on tiny generated videos."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from extract_helpers import known_frames, make_dataset, write_video
from pipeline.cli import main
from pipeline.features import file_attrs, read_features, shard_dir
from pipeline.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "synthetic.toml")
# rgb and flow: the demo config also extracts the skeleton stream, which these videos lack
# (8 segments: the file names below; the demo config's own count may change)
TINY = ["backbone=tsn_r18", "segments=8", "short_side=32", "crop_size=32", "batch_videos=4",
        "workers=0", "modalities=rgb,flow"]


def common(root: Path, manifest: Path, features: str = "features") -> list[str]:
    return [f"manifest={manifest}", "dataset=tiny", f"features_dir={root / features}",
            f"finetune_dir={root / 'finetuned'}"]


def extract(root, manifest, *extra, features="features"):
    return main(["extract", "--config", CONFIG, *common(root, manifest, features), *TINY, *extra])


def flow(manifest):
    return main(["flow", "--config", CONFIG, f"manifest={manifest}", "workers=1"])


def feats_path(root, modality, features="features"):
    return root / features / "tiny" / f"tsn_r18-{modality}-8seg.h5"


def test_flow_then_extract_rgb_and_flow(tmp_path, capsys):
    from extract.runner import features_for_videos

    m = make_dataset(tmp_path, takes=3, views=2)
    assert flow(m) == 0
    recs = load_manifest(m)
    assert all(r.flow is not None and r.flow.is_file() for r in recs)
    assert flow(m) == 0 and "0 computed" in capsys.readouterr().out  # rerun: nothing to do

    assert extract(tmp_path, m, "workers=1") == 0  # decode in a worker process
    for mod in ("rgb", "flow"):
        fs = read_features(feats_path(tmp_path, mod), expect={"backbone": "tsn_r18", "modality": mod})
        assert fs.features.shape == (6, 8, 512)
        assert np.isfinite(fs.features).all() and fs.features.std() > 0
        a = fs.attrs
        assert a["checkpoint_sha256"] == "random-init" and a["init"] == "random"
        assert a["decoder"] == "auto" and "segments=8" in a["sampling"]
        assert a["sampling"].endswith("out_of_bound=loop") and "center crop_size=32" in a["crops"]
        assert json.loads(a["config_json"])["backbone"] == "tsn_r18" and a["code_version"]
        by_id = {r.video_id: r for r in recs}
        for vid, lab in zip(fs.video_id, fs.labels):
            np.testing.assert_array_equal(lab, by_id[vid].multi_hot)
    assert "clip_len=5" in file_attrs(feats_path(tmp_path, "flow"))["sampling"]
    assert "method=farneback" in file_attrs(feats_path(tmp_path, "flow"))["flow_recipe"]

    # A rerun does no work: files untouched, nothing extracted.
    mtimes = [feats_path(tmp_path, x).stat().st_mtime_ns for x in ("rgb", "flow")]
    capsys.readouterr()
    assert extract(tmp_path, m) == 0
    assert "rgb: 0 extracted, 6 already done" in capsys.readouterr().out
    assert mtimes == [feats_path(tmp_path, x).stat().st_mtime_ns for x in ("rgb", "flow")]
    assert not shard_dir(feats_path(tmp_path, "rgb")).exists()

    # The assistant's path: a raw video gets the features stored for it.
    rgb = read_features(feats_path(tmp_path, "rgb"))
    got = features_for_videos([recs[0].path, recs[3].path], rgb.attrs, "rgb")
    idx = rgb.index()
    want = rgb.features[[idx[recs[0].video_id], idx[recs[3].video_id]]]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    fl = read_features(feats_path(tmp_path, "flow"))
    got = features_for_videos([recs[1].path], fl.attrs, "flow")  # flow recomputed from recipe
    np.testing.assert_allclose(got[0], fl.features[fl.index()[recs[1].video_id]], rtol=1e-4, atol=1e-4)


def test_bad_inputs_go_to_failures_csv_and_run_goes_on(tmp_path, capsys):
    m = make_dataset(tmp_path, takes=2, views=2)  # t0_v1, t0_v2, t1_v1, t1_v2: good
    vids = tmp_path / "videos"
    (vids / "empty.mp4").write_bytes(b"")
    (vids / "notvideo.mp4").write_text("hello, not a video\n" * 100)
    good = (vids / "t0_v1.mp4").read_bytes()
    (vids / "trunc.mp4").write_bytes(good[: len(good) // 3])
    write_video(vids / "short.mp4", known_frames(4), lossless=False)
    # A sibling with another resolution and frame rate is handled, not rejected.
    write_video(vids / "odd.mp4", known_frames(30, 60, 80, seed=9), fps=15, lossless=False)
    extra = [("missing", "videos/missing.mp4"), ("empty", "videos/empty.mp4"),
             ("notvideo", "videos/notvideo.mp4"), ("trunc", "videos/trunc.mp4"),
             ("short", "videos/short.mp4")]
    with m.open("a", newline="") as f:
        w = csv.writer(f)
        for i, (vid, p) in enumerate(extra):
            w.writerow([vid, p, f"bad{i}", 1, "p1", "train", "1", ""])
        w.writerow(["odd", "videos/odd.mp4", "t0", 3, "p1", "train", "0", ""])
    assert flow(m) == 1  # the bad videos get no flow
    recs = load_manifest(m, check_files=False)
    lost = next(r for r in recs if r.video_id == "t1_v2").flow
    lost.unlink()  # a video whose flow file is missing

    assert extract(tmp_path, m) == 1
    out = capsys.readouterr().out
    assert "failure(s) in total" in out
    rows = list(csv.DictReader((tmp_path / "features" / "tiny" / "failures.csv").open()))
    got = {(r["video_id"], r["reason"].split(":")[0]): r for r in rows}
    for vid in ("missing", "empty", "notvideo", "trunc", "short"):
        assert (vid, "rgb") in got and (vid, "flow") in got, vid
    assert ("t1_v2", "flow") in got and ("t1_v2", "rgb") not in got
    assert len(rows) == 11
    assert "not found" in got[("missing", "rgb")]["reason"]
    assert "empty" in got[("empty", "rgb")]["reason"]
    assert "too few frames (4 < min_frames 8)" in got[("short", "rgb")]["reason"]
    assert "not found" in got[("t1_v2", "flow")]["reason"]
    assert got[("missing", "rgb")]["path"].endswith("videos/missing.mp4")
    rgb = read_features(feats_path(tmp_path, "rgb"))
    assert sorted(rgb.video_id) == ["odd", "t0_v1", "t0_v2", "t1_v1", "t1_v2"]
    flo = read_features(feats_path(tmp_path, "flow"))
    assert sorted(flo.video_id) == ["odd", "t0_v1", "t0_v2", "t1_v1"]
    # Rerun: retries only the failures; nothing extracted is lost.
    assert extract(tmp_path, m) == 1
    assert len(read_features(feats_path(tmp_path, "rgb"))) == 5


def test_checkpoint_auto_and_recipe_change_is_refused(tmp_path, capsys):
    from safetensors.torch import save_file

    from extract.backbones import build_recognizer
    from pipeline.features import finetuned_checkpoint_path

    m = make_dataset(tmp_path, takes=1, views=2)
    ck = finetuned_checkpoint_path(tmp_path / "finetuned", "tiny", "tsn_r18", "rgb")
    ck.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in build_recognizer("tsn_r18", "rgb", seed=7)
               .state_dict().items()}, str(ck))
    assert extract(tmp_path, m, "modalities=rgb") == 0
    a = file_attrs(feats_path(tmp_path, "rgb"))
    from pipeline.provenance import sha256_file

    assert a["init"] == "checkpoint" and a["checkpoint_sha256"] == sha256_file(ck)
    assert a["checkpoint_path"] == str(ck.resolve())
    # Same file, different recipe: refused with a one-line reason, exit 2.
    assert extract(tmp_path, m, "modalities=rgb", "checkpoint=none") == 2
    assert "existing features were made with checkpoint_sha256" in capsys.readouterr().err
    assert main(["extract", "--config", CONFIG, *common(tmp_path, m), "crop=five"]) == 2


def test_sigkill_then_resume_gives_the_same_features(tmp_path):
    m = make_dataset(tmp_path, takes=8, views=2, frames=16)
    args = ["short_side=64", "crop_size=64", "batch_videos=1", "workers=0", "rows_per_shard=1",
            "modalities=rgb"]
    assert extract(tmp_path, m, *args, features="ref") == 0
    ref = read_features(feats_path(tmp_path, "rgb", "ref"))

    env = dict(os.environ, OMP_NUM_THREADS="1", CPRCLIP_NO_PROGRESS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pipeline", "extract", "--config", CONFIG,
           *common(tmp_path, m), *TINY, *args]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    shards = shard_dir(feats_path(tmp_path, "rgb"))
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        if shards.is_dir() and len(list(shards.glob("shard-*.h5"))) >= 2:
            break
        time.sleep(0.002)
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    n_before = len(list(shards.glob("shard-*.h5")))
    assert 2 <= n_before < 16 and not feats_path(tmp_path, "rgb").exists()

    assert extract(tmp_path, m, *args) == 0
    got = read_features(feats_path(tmp_path, "rgb"))
    assert list(got.video_id) == list(ref.video_id)
    np.testing.assert_allclose(got.features, ref.features, rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.rglob("*.tmp"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one(tmp_path):
    m = make_dataset(tmp_path, takes=3, views=2)
    assert flow(m) == 0
    assert extract(tmp_path, m, features="single") == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", CPRCLIP_NO_PROGRESS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
           f"--master-port={_free_port()}", "-m", "pipeline", "extract", "--config", CONFIG,
           *common(tmp_path, m, "dist"), *TINY, "device=cpu"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for mod in ("rgb", "flow"):
        one = read_features(feats_path(tmp_path, mod, "single"))
        two = read_features(feats_path(tmp_path, mod, "dist"))
        assert list(two.video_id) == list(one.video_id)
        np.testing.assert_allclose(two.features, one.features, rtol=1e-4, atol=1e-5)
        assert not shard_dir(feats_path(tmp_path, mod, "dist")).exists()
    # Both ranks did work: each wrote shards tagged with its rank before consolidation.
    assert "rank 1/2" in r.stderr and "rank 0/2" in r.stderr


@pytest.mark.gpu
def test_cuda_extract_matches_cpu(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    m = make_dataset(tmp_path, takes=2, views=2)
    assert extract(tmp_path, m, "modalities=rgb", "device=cpu", features="cpu") == 0
    assert extract(tmp_path, m, "modalities=rgb", "device=cuda", "workers=1", features="gpu") == 0
    a = read_features(feats_path(tmp_path, "rgb", "cpu"))
    b = read_features(feats_path(tmp_path, "rgb", "gpu"))
    assert b.attrs["precision"] == "bf16" and a.attrs["precision"] == "fp32"
    rel = np.linalg.norm(a.features - b.features) / np.linalg.norm(a.features)
    assert rel < 0.02  # bf16 autocast on the GPU vs fp32 on the CPU


def _rewrite_manifest(path: Path, edit) -> None:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    body = [r for r in (edit(list(r)) for r in rows[1:]) if r is not None]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(rows[0])
        w.writerows(body)


def test_features_follow_a_corrected_manifest_without_recomputing(tmp_path, capsys, monkeypatch):
    """Issue 16, item 2: after extraction the user fixes a take's labels, moves a take to val and
    removes a row. Before, a rerun said "all already done" and the file kept the old labels and
    the removed row (and train reads only the file)."""
    from extract import runner
    from pipeline.features import align_to_manifest

    m = make_dataset(tmp_path, takes=3, views=2)  # t0..t2 x views 1, 2; labels 0, 1, 2
    assert extract(tmp_path, m, "modalities=rgb") == 0
    path = feats_path(tmp_path, "rgb")
    before = read_features(path)
    old_manifest = tmp_path / "old.csv"
    old_manifest.write_bytes(m.read_bytes())

    def edit(r):
        if r[0] == "t2_v2":
            return None  # the row is removed
        if r[2] == "t0":
            r[6] = "5"  # the take's labels are corrected (both views)
        if r[2] == "t1":
            r[5] = "val"
        return r

    _rewrite_manifest(m, edit)
    # Nothing may be recomputed: building the model would mean it is.
    monkeypatch.setattr(runner, "FeatureModel", lambda *a, **k: pytest.fail("re-extracted"))
    capsys.readouterr()
    assert extract(tmp_path, m, "modalities=rgb") == 0
    out, err = capsys.readouterr()
    assert "0 extracted, 5 already done, 0 failed, 4 relabelled, 1 removed" in out, out
    assert "labels of 2 video(s) changed (t0_v1: 0 -> 5, t0_v2: 0 -> 5)" in err, err
    assert "split of 2 video(s) changed (t1_v1: train -> val, t1_v2: train -> val)" in err
    assert "1 row(s) no longer in the manifest (t2_v2)" in err
    after = read_features(path)
    assert sorted(after.video_id) == ["t0_v1", "t0_v2", "t1_v1", "t1_v2", "t2_v1"]
    by_id = {r.video_id: r for r in load_manifest(m)}
    for i, vid in enumerate(after.video_id):
        np.testing.assert_array_equal(after.labels[i], by_id[vid].multi_hot)
        assert after.split[i] == by_id[vid].split
        np.testing.assert_array_equal(after.features[i], before.features[before.index()[vid]])
    assert file_attrs(path)["config_json"] == before.attrs["config_json"]
    # In line now: a rerun leaves the file alone.
    mtime = path.stat().st_mtime_ns
    assert extract(tmp_path, m, "modalities=rgb") == 0
    assert path.stat().st_mtime_ns == mtime
    # A reader holding an older file gets the same rows from the manifest (for train / eval).
    aligned = align_to_manifest(before, m)
    assert sorted(aligned.video_id) == sorted(after.video_id)
    order = [aligned.index()[v] for v in after.video_id]
    np.testing.assert_array_equal(aligned.labels[order], after.labels)
    np.testing.assert_array_equal(aligned.split[order], after.split)
    # ... and the old manifest gives the old rows back, features untouched
    again = align_to_manifest(before, old_manifest)
    np.testing.assert_array_equal(again.labels, before.labels)
    np.testing.assert_array_equal(again.features, before.features)
