"""Backbone forward time alone: one video's frames through ``frame_features``, fp32 and bf16.

    .venv/bin/python bench/backbone.py [--backbone tsn_r18] [--crop-size 224] [--frames 8]
                                       [--threads 2] [--repeats 15] [--precisions fp32,bf16]

Builds the backbone as extract does (seeded random init: timing does not depend on the weights,
channels_last), then times ``--repeats`` forwards of ``--frames`` normalised inputs (one video:
T segments) after 3 warm-up forwards, under ``torch.inference_mode``, in fp32 and under bf16
autocast on CPU (or CUDA with ``--device cuda``). For a clip backbone (I3D) each segment is a
dense clip of ``dense`` frames, so images/s counts T x dense frames. Prints the medians; writes
nothing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def forward_times(model, x, amp: bool, repeats: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds of this process) of each timed forward. CPU time is the
    steadier figure on a shared machine: other processes stretch the wall time, not it."""
    import torch

    from extract.backbones import frame_features

    wall, cpu = [], []
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(repeats + 3):
            t, c = time.perf_counter(), time.process_time()
            frame_features(model, x)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
    return wall, cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="tsn_r18")
    p.add_argument("--modality", default="rgb")
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--frames", type=int, default=8, help="frames per forward (T segments)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16 or both")
    a = p.parse_args()

    import torch

    from extract.backbones import get_spec, load_backbone

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    model, _, _ = load_backbone(a.backbone, a.modality, None, a.frames, 0)
    spec = get_spec(a.backbone)
    # as extract/runner.py: a 3D network takes channels_last in its 5-D form
    model.eval().to(dev, memory_format=torch.channels_last_3d if spec.dense
                    else torch.channels_last)
    c = spec.in_channels(a.modality)
    images = a.frames * spec.clip_len(a.modality) if spec.dense else a.frames
    x = torch.randn(a.frames, c, a.crop_size, a.crop_size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    med, med_cpu = {}, {}
    for name in a.precisions.split(","):
        wall, cpu = forward_times(model, x, name == "bf16", a.repeats)
        med[name], med_cpu[name] = statistics.median(wall), statistics.median(cpu)
    print(f"{a.backbone} {a.modality}, {a.frames} segments ({images} frames) at {a.crop_size}, "
          f"{a.device}, {a.threads} thread(s), median of {a.repeats} forwards, 1-min load "
          f"{os.getloadavg()[0]:.1f}:")
    for name, t in med.items():
        print(f"  {name}: {1000 * t:.0f} ms per video, {images / t:.0f} images/s; CPU "
              f"{1000 * med_cpu[name]:.0f} ms per video")
    if len(med) == 2:
        print(f"  bf16 is {med['fp32'] / med['bf16']:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
