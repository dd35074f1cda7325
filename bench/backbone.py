"""Backbone forward time alone: one video's frames through ``frame_features``, fp32 and bf16.

    .venv/bin/python bench/backbone.py [--backbone tsn_r18] [--crop-size 224] [--frames 8]
                                       [--threads 2] [--repeats 15]

Builds the backbone as extract does (seeded random init: timing does not depend on the weights,
channels_last), then times ``--repeats`` forwards of ``--frames`` normalised frames after 3
warm-up forwards, under ``torch.inference_mode``, in fp32 and under bf16 autocast on CPU (or
CUDA with ``--device cuda``). Prints the median and the ratio; writes nothing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def forward_times(model, x, amp: bool, repeats: int) -> list[float]:
    import torch

    from extract.backbones import frame_features

    out = []
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(repeats + 3):
            t = time.perf_counter()
            frame_features(model, x)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                out.append(time.perf_counter() - t)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="tsn_r18")
    p.add_argument("--modality", default="rgb")
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--frames", type=int, default=8, help="frames per forward (T segments)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()

    import torch

    from extract.backbones import get_spec, load_backbone

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    model, _, _ = load_backbone(a.backbone, a.modality, None, a.frames, 0)
    model.eval().to(dev, memory_format=torch.channels_last)
    c = get_spec(a.backbone).in_channels(a.modality)
    x = torch.randn(a.frames, c, a.crop_size, a.crop_size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    med = {}
    for name, amp in (("fp32", False), ("bf16", True)):
        med[name] = statistics.median(forward_times(model, x, amp, a.repeats))
    print(f"{a.backbone} {a.modality}, {a.frames} frames at {a.crop_size}, {a.device}, "
          f"{a.threads} thread(s), median of {a.repeats} forwards:")
    for name, t in med.items():
        print(f"  {name}: {1000 * t:.0f} ms")
    print(f"  bf16 is {med['fp32'] / med['bf16']:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
