"""Issue 7 part 2: SIGKILL a long stage at a seeded random point, rerun it, and get the result
of an uninterrupted run. A killed run leaves no file that looks complete.

extract has its own kill/resume test (tests/extract/test_extract_cli.py::
test_sigkill_then_resume_gives_the_same_features); this file covers flow, train and finetune
(tests/finetune/test_finetune_resume.py adds a clean stop-and-resume)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from fault_media import ROOT, good, row, write_config, write_manifest
from pipeline.cli import main
from pipeline.manifest import load_manifest
from pipeline.taxonomy import NUM_CLASSES, composite_label_sets, multi_hot

ENV = dict(os.environ, OMP_NUM_THREADS="1", CPRCLIP_NO_PROGRESS="1", PYTHONPATH=str(ROOT))


def _start(args: list[str]) -> subprocess.Popen:
    # A session of its own, so the test can see (and clean up) any process the run forked.
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _orphans(p: subprocess.Popen) -> bool:
    """True when processes of the killed run's group are still alive after 2 s (killed then)."""
    deadline = time.time() + 2
    while time.time() < deadline:
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    return True


def _kill_when(p: subprocess.Popen, ready, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout and p.poll() is None and not ready():
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    rc = p.wait()
    assert rc == -signal.SIGKILL, f"the run ended (rc {rc}) before it could be killed: " \
                                  f"{p.stderr.read().decode()[-2000:]}"


def _flow_frames(path: Path) -> np.ndarray:
    from extract.flow import open_flow

    with open_flow(path, "pyav") as r:
        return r.get(np.arange(r.num_frames))


FLOW_ARGS = ["method=farneback", "short_side=32", "workers=1"]


def _flow_datasets(tmp_path, n: int):
    """Two copies (ref/, run/) of n small videos with manifests; flow computed for ref/.
    Returns ref/'s manifest."""
    for name in ("ref", "run"):
        for i in range(n):
            good(tmp_path / name / "videos" / f"v{i}.mp4", seed=i, n=24)
        write_manifest(tmp_path / name / "manifest.csv",
                       [row(f"v{i}", f"videos/v{i}.mp4") for i in range(n)])
    ref_m = tmp_path / "ref" / "manifest.csv"
    assert main(["flow", "--config", str(write_config(tmp_path / "ref", ref_m)), *FLOW_ARGS]) == 0
    return ref_m


def test_flow_sigkill_then_rerun(tmp_path):
    rng = np.random.default_rng(7)
    n = 8
    ref_m = _flow_datasets(tmp_path, n)

    m = tmp_path / "run" / "manifest.csv"
    cfg = write_config(tmp_path / "run", m)
    flow_dir = tmp_path / "run" / "flow"
    k = int(rng.integers(1, n - 2))  # kill after k videos are done (seeded)
    p = _start(["flow", "--config", str(cfg), *FLOW_ARGS])
    _kill_when(p, lambda: flow_dir.is_dir() and len(list(flow_dir.glob("v*.mp4"))) >= k)
    done = sorted(flow_dir.glob("v*.mp4"))
    assert k <= len(done) < n
    # Whatever looks complete is complete: every flow video has all 23 flow frames.
    for f in done:
        assert _flow_frames(f).shape[0] == 23, f
    assert all(r.flow is None for r in load_manifest(m))  # the manifest is untouched
    assert not _orphans(p), "the killed flow run left worker processes running"

    assert main(["flow", "--config", str(cfg), *FLOW_ARGS]) == 0
    assert not list(flow_dir.glob(".*.tmp"))  # the killed run's temporary is cleaned up
    got = {r.video_id: r.flow for r in load_manifest(m)}
    want = {r.video_id: r.flow for r in load_manifest(ref_m)}
    for vid in want:
        np.testing.assert_array_equal(_flow_frames(got[vid]), _flow_frames(want[vid]))


def _features(features_dir: Path) -> None:
    """Tiny class-dependent features (D=16, T=4) written the way extract writes them."""
    from pipeline.features import ShardWriter, consolidate, feature_path

    rng = np.random.default_rng(0)
    means = rng.standard_normal((NUM_CLASSES, 16)).astype(np.float32)
    path = feature_path(features_dir, "tiny", "toy", "rgb", 4)
    w = ShardWriter(path, {"backbone": "toy", "modality": "rgb", "segments": 4,
                           "checkpoint_sha256": "0" * 64, "init": "random"})
    i = 0
    comps = composite_label_sets()
    for k in range(NUM_CLASSES):
        for split, part in (("train", "p1"), ("train", "p2"), ("val", "p5")):
            x = means[k] + 0.5 * rng.standard_normal((4, 16)).astype(np.float32)
            w.add(f"v{i:03d}", f"t{i:03d}", 1, part, split, multi_hot((k,)), x)
            i += 1
    for j in range(6):
        lab = comps[j * 13]
        x = means[list(lab)].mean(0) + 0.5 * rng.standard_normal((4, 16)).astype(np.float32)
        w.add(f"v{i:03d}", f"t{i:03d}", 1, "p6", "test", multi_hot(lab), x)
        i += 1
    w.close()
    consolidate(path)


def test_train_sigkill_then_resume(tmp_path):
    rng = np.random.default_rng(11)
    _features(tmp_path / "features")
    cfg = write_config(tmp_path)
    base = ["--config", str(cfg), "backbone=toy", "segments=4", "modalities=rgb",
            "models=cpr_clip_plus", "epochs=40", "text_encoder=test_hash", "imagine_per_epoch=64",
            "batch_size=16", "val_every=5", "hidden_dim=16", "device=cpu", "num_threads=1",
            f"text_cache_dir={tmp_path / 'cache'}"]
    assert main(["train", *base, "run_name=ref"]) == 0
    run = tmp_path / "runs" / "killed"
    metrics = run / "metrics.jsonl"
    k = int(rng.integers(3, 15))  # kill after epoch k (seeded)

    def epochs_done() -> int:
        try:
            return sum(1 for ln in metrics.read_text().splitlines() if '"train/loss"' in ln)
        except FileNotFoundError:
            return 0

    p = _start(["train", *base, "run_name=killed"])
    _kill_when(p, lambda: epochs_done() >= k)
    assert not (run / "checkpoint.safetensors").exists()  # nothing that looks finished
    assert not _orphans(p)
    assert not json.loads((run / "config.json").read_text()).get("finished")

    assert main(["train", *base, "run_name=killed", "resume=true"]) == 0
    a = load_file(str(tmp_path / "runs" / "ref" / "checkpoint.safetensors"))
    b = load_file(str(run / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    assert json.loads((run / "config.json").read_text())["finished"]
    # A killed writer's pid-named temporary never passes for a checkpoint.
    assert not [f for f in run.iterdir() if f.name.endswith(".tmp") and "checkpoint" in f.name]


def test_retrain_sigkill_keeps_the_finished_run(tmp_path):
    """Issue 16, item 4: SIGKILL a fresh `cprclip train` over a finished, evaluated run. Before,
    the old checkpoint was deleted at the start, so the kill left no model. Now the new run is
    written beside the old one and swapped in only when complete: the kill leaves the old run
    as it was (weights, eval's files), and a rerun replaces it in full."""
    from pipeline.provenance import sha256_file
    from train.runs import load_run

    rng = np.random.default_rng(12)
    _features(tmp_path / "features")
    cfg = write_config(tmp_path)
    base = ["--config", str(cfg), "backbone=toy", "segments=4", "modalities=rgb", "models=bce",
            "epochs=150", "imagine_per_epoch=64", "batch_size=16", "val_every=1",
            "hidden_dim=16", "device=cpu", "num_threads=1", "run_name=r"]
    assert main(["train", *base]) == 0
    run = tmp_path / "runs" / "r"
    old = {f.name: sha256_file(f) for f in run.iterdir() if f.is_file()}
    (run / "thresholds.json").write_text(json.dumps(  # what `cprclip eval` leaves
        {"checkpoint": {"sha256": old["checkpoint.safetensors"]}}))
    new = tmp_path / "runs" / ".r.new"
    k = int(rng.integers(3, 20))

    def epochs_done() -> int:  # of the retrain (its lr is 5x the first's), wherever it writes
        n = 0
        for f in (new / "metrics.jsonl", run / "metrics.jsonl"):
            try:
                n += sum(1 for ln in f.read_text().splitlines()
                         if ln.endswith("}") and json.loads(ln)["train/lr"] > 0.002)
            except FileNotFoundError:
                pass
        return n

    p = _start(["train", *base, "lr=0.005"])
    _kill_when(p, lambda: epochs_done() >= k)
    assert not _orphans(p)
    assert {f.name: sha256_file(f) for f in run.iterdir()
            if f.is_file() and f.name != "thresholds.json"} == old
    assert (run / "thresholds.json").is_file()
    assert load_run(run).config["lr"] == 1e-3  # the old model, whole

    assert main(["train", *base, "lr=0.005"]) == 0  # resume=false: the retrain starts over
    assert load_run(run).config["lr"] == 0.005
    assert sha256_file(run / "checkpoint.safetensors") != old["checkpoint.safetensors"]
    assert not (run / "thresholds.json").exists()  # it belonged to the old checkpoint
    assert not new.exists()


def test_finetune_sigkill_then_resume(tmp_path, capfd):
    """SIGKILL `cprclip finetune` after a seeded random number of epochs (not a clean stop): no
    checkpoint that looks finished, no orphans; the rerun resumes from the last saved state and
    gives the weights of an uninterrupted run."""
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "finetune"))
    from finetune_helpers import make_dataset

    rng = np.random.default_rng(5)
    m = make_dataset(tmp_path / "data")
    base = ["finetune", "--config", "configs/synthetic.toml", f"manifest={m}", "modalities=rgb",
            "backbone=tsn_r18", "init_checkpoint=none",  # synthetic.toml: "pretrained"
            "segments=2", "short_side=48", "crop_size=32", "epochs=6",
            "flow_epochs=0", "batch_size=4", "lr=0.01", "warmup_epochs=0", "val_every=1",
            "workers=0", "cache=none", "num_threads=1", "cpu_amp=false"]
    assert main([*base, f"finetune_dir={tmp_path / 'ref'}"]) == 0
    run = tmp_path / "killed" / "synthetic" / "tsn_r18-rgb"  # <finetune_dir>/<dataset>/
    k = int(rng.integers(1, 5))  # kill once epoch k's state is saved (seeded), mid-epoch k+1

    def saved_epochs() -> int:
        try:
            return sum(1 for ln in (run / "metrics.jsonl").read_text().splitlines() if ln)
        except FileNotFoundError:
            return 0

    p = _start([*base, f"finetune_dir={tmp_path / 'killed'}"])
    _kill_when(p, lambda: saved_epochs() >= k and (run / "state.pt").exists())
    assert not (run / "checkpoint.safetensors").exists()  # nothing that looks finished
    assert not _orphans(p)
    done = torch.load(run / "state.pt", weights_only=True)["epoch"]
    assert max(1, k - 1) <= done < 6  # metrics.jsonl is written just before state.pt
    capfd.readouterr()

    assert main([*base, f"finetune_dir={tmp_path / 'killed'}"]) == 0
    assert f"resuming after epoch {done} of 6" in "".join(capfd.readouterr())
    a = load_file(str(tmp_path / "ref" / "synthetic" / "tsn_r18-rgb" / "checkpoint.safetensors"))
    b = load_file(str(run / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=key)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert not [f for f in run.iterdir() if f.name.endswith(".tmp")]
