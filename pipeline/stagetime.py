"""Wall time of each Make stage, and the table `make all` ends with.

``python -m pipeline.stagetime run FILE NAME -- CMD...`` runs CMD, appends ``NAME<TAB>seconds<TAB>
exit code`` to FILE and exits with CMD's code. ``python -m pipeline.stagetime table FILE`` prints
the table (the last entry of each stage, in order), with the machine it ran on: how long `make all`
takes depends on the CPU (native bf16 or not), so the table says which it was.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def _run(file: Path, name: str, cmd: list[str]) -> int:
    t0 = time.perf_counter()
    try:
        rc = subprocess.call(cmd)
    except KeyboardInterrupt:
        rc = 130
    except OSError as e:
        sys.stderr.write(f"stagetime: cannot run {cmd[0]!r}: {e}\n")
        rc = 127
    dt = time.perf_counter() - t0
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("a", encoding="utf-8") as f:
        f.write(f"{name}\t{dt:.1f}\t{rc}\n")
    return rc


def _fmt(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def read_times(file: Path) -> dict[str, tuple[float, int]]:
    """stage -> (seconds, exit code) of its last run recorded in ``file``, in first-seen order."""
    out: dict[str, tuple[float, int]] = {}
    if not file.is_file():
        return out
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue  # a line cut by a kill: skip it, keep the rest
        try:
            out[parts[0]] = (float(parts[1]), int(parts[2]))
        except ValueError:
            continue
    return out


def table(file: Path) -> str:
    from pipeline.runtime import cpu_bf16_native, cpu_model, usable_cpus

    times = read_times(file)
    if not times:
        return f"no stage times recorded in {file}"
    rows = ["| stage | wall time | status |", "|---|---:|---|"]
    for name, (sec, rc) in times.items():
        rows.append(f"| {name} | {_fmt(sec)} | {'ok' if rc == 0 else f'exit {rc}'} |")
    total = sum(s for s, _ in times.values())
    rows.append(f"| **total** | **{_fmt(total)}** | |")
    rows.append("")
    rows.append(f"machine: {cpu_model()}, {usable_cpus()} usable CPU(s), native bf16: "
                f"{'yes' if cpu_bf16_native() else 'no'}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 4 and argv[0] == "run" and "--" in argv:
        i = argv.index("--")
        if i == 3 and argv[i + 1:]:
            return _run(Path(argv[1]), argv[2], argv[i + 1:])
    if len(argv) == 2 and argv[0] == "table":
        sys.stdout.write("Stage wall times (this `make all`):\n\n" + table(Path(argv[1])) + "\n")
        return 0
    sys.stderr.write("usage: python -m pipeline.stagetime run FILE NAME -- CMD... | table FILE\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
