"""torchrun with 2 gloo processes on CPU == one process with the same global batch.

BatchNorm: with batch statistics each process normalises over its own half batch, so DDP is
*not* the same computation as one process over the whole batch (that is what mmaction2 does on
many GPUs too; SyncBatchNorm fixes it but torch has it only on CUDA). The equivalence test
therefore uses ``bn=frozen`` (running statistics, mmaction2's ``norm_eval``): every sample's
gradient is then independent of its batch mates, DDP's gradient average over the 2 half
batches equals the single-process mean over the full batch, and the weights must agree to
float tolerance. ``dropout=0`` because each process draws its own dropout masks.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from pipeline.config import load_stage_config
from finetune.config import FinetuneConfig
from finetune.loop import run_finetune

ROOT = Path(__file__).resolve().parents[2]
KEYS = dict(backbone="tsn_r18", init_checkpoint="none", segments=4, short_side=48, crop_size=32, epochs=2,
            batch_size=4, lr=0.02, workers=0, bn="frozen", dropout=0.0, modalities="rgb",
            clip_grad=1.0, warmup_epochs=0, cpu_amp="false")


def test_two_gloo_processes_match_one_process(tiny_manifest, tmp_path):
    overrides = [f"{k}={v}" for k, v in KEYS.items()]
    env = dict(os.environ, OMP_NUM_THREADS="1", CPRCLIP_NO_PROGRESS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "pipeline", "finetune", "--config", "configs/synthetic.toml",
           f"manifest={tiny_manifest}", f"finetune_dir={tmp_path / 'ddp'}", *overrides]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 process(es)" in p.stderr  # both ranks joined the group

    # the same config file and overrides, in this process
    cfg = load_stage_config(FinetuneConfig, "finetune", ROOT / "configs/synthetic.toml",
                            [f"manifest={tiny_manifest}", f"finetune_dir={tmp_path / 'one'}", *overrides])
    single = run_finetune(cfg)[0]
    a = load_file(str(single.checkpoint))
    b = load_file(str(tmp_path / "ddp" / "synthetic" / "tsn_r18-rgb" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    from extract.backbones import build_recognizer

    init = build_recognizer("tsn_r18", "rgb", num_segments=4, seed=0).state_dict()
    moved = sum(not torch.allclose(a[k], init[k]) for k in a if a[k].is_floating_point())
    assert moved > 10  # training did change the weights, so the comparison means something
