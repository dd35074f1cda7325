"""Machine-dependent choices made at run time: device, process group, bf16, thread count.

A config never hard-codes what one developer's CPU did well. bf16 autocast on a CPU without
native bf16 (AVX512-BF16 or AMX) is emulated by oneDNN: a ResNet-18 training step took 16.3 s
instead of 1.02 s on an AVX2-only AMD EPYC. So ``"auto"`` asks torch what the CPU runs natively,
and every stage logs its choice once and records it in its artifact (``describe()``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: this rank's GPU (``LOCAL_RANK`` under torchrun) when CUDA exists, else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        return torch.device("cpu")
    return torch.device(device)


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_bf16_native() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX), per torch itself.

    ``ONEDNN_MAX_CPU_ISA=AVX2`` makes this False on an AVX-512 machine, which is how the budget
    of an AVX2-only CPU is measured here (docs/benchmarks.md).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_logged: set[str] = set()


def _once(key: str, level: int, msg: str, *args: Any) -> None:
    if key not in _logged:
        _logged.add(key)
        log.log(level, msg, *args)


def resolve_cpu_amp(value: bool | str, where: str = "cpu_amp") -> bool:
    """``"auto"`` -> bf16 autocast only where the CPU has native bf16. An explicit ``true`` on a
    CPU without it is honoured, with a warning that names the slowdown."""
    native = cpu_bf16_native()
    if value == "auto":
        _once(f"amp-auto-{where}", logging.INFO, "%s=auto: %s", where,
              "bf16 autocast (this CPU has native bf16)" if native
              else "fp32 (no native bf16 on this CPU; emulated bf16 is ~16x slower)")
        return native
    if value and not native:
        _once(f"amp-slow-{where}", logging.WARNING,
              "%s=true but this CPU has no native bf16 (AVX512-BF16/AMX): oneDNN emulates it, "
              "about 16x slower than fp32 for a ResNet-18 step; use %s=auto", where, where)
    return bool(value)


def resolve_threads(value: int | str, side_processes: int = 0, where: str = "threads") -> int:
    """torch's intra-op threads. ``"auto"`` (or 0): the usable CPUs less the decode processes
    that run beside the model, at least 1, so model and decoders never fight for one core."""
    if value in ("auto", 0, "0"):
        n = max(1, usable_cpus() - max(0, side_processes))
        _once(f"threads-{where}-{n}", logging.INFO, "%s=auto: %d torch thread(s) (%d usable CPU(s), "
              "%d decode process(es) beside the model)", where, n, usable_cpus(), side_processes)
        return n
    return int(value)


def describe(device: torch.device, amp: bool, threads: int) -> dict[str, Any]:
    """What the machine-dependent choices were, for the artifact's metadata."""
    return {"device": str(device), "precision": "bf16" if amp else "fp32",
            "torch_threads": threads, "cpu_bf16_native": cpu_bf16_native(),
            "usable_cpus": usable_cpus(), "torch": torch.__version__}


@dataclass
class Dist:
    """This process's place in a ``torchrun`` group (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def init_distributed(device: torch.device) -> Dist:
    """Join the ``torchrun`` process group (nccl on CUDA, gloo on CPU) when WORLD_SIZE > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if world > 1:
        return Dist(dist.get_rank(), dist.get_world_size())
    return Dist()


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), for benchmark and timing reports."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
