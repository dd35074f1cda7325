"""Is bf16 autocast worth it on this CPU? One training step, fp32 against bf16, side by side.

    python bench/cpu_amp.py                       # this CPU as it is
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python bench/cpu_amp.py   # an AVX2-only CPU

Prints the median step time of each precision, their ratio, what torch reports about native
bf16, and what ``cpu_amp = "auto"`` would choose (pipeline/runtime.py). The step is the
fine-tuning stage's shape: batch 16 at 112x112, SGD, for tsn_r18 and tsn_mnv2.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402


def step_time(model: nn.Module, bf16: bool, batch: int, size: int, repeats: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 14, (batch,))
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step pays oneDNN's kernel creation
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="tsn_r18,tsn_mnv2")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from extract.backbones import build_recognizer
    from finetune.model import SegmentClassifier
    from pipeline.runtime import cpu_bf16_native

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16: {cpu_bf16_native()}, cpu_amp=auto -> "
          f"{'bf16' if cpu_bf16_native() else 'fp32'}, {a.threads} thread(s)")
    print("| backbone | fp32 step (s) | bf16 step (s) | bf16 / fp32 |")
    print("|---|---:|---:|---:|")
    for name in a.backbones.split(","):
        model = SegmentClassifier(build_recognizer(name, "rgb", 14, 1), 1).train()
        fp32 = step_time(model, False, a.batch, a.size, a.repeats)
        bf16 = step_time(model, True, a.batch, a.size, a.repeats)
        print(f"| {name} | {fp32:.3f} | {bf16:.3f} | {bf16 / fp32:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
