"""Load held by `cprclip serve`: concurrent takes, peak memory, /health latency (issue 16).

    .venv/bin/python bench/serve_load.py [--takes 12] [--clients 6] [--concurrent-takes 2]

Builds (once, cached in --work) a small synthetic dataset and a real run on it with the real
CLI (synth 2 participants x 2 views, 48 frames at 160x120 -> flow -> extract tsn_r18 random
init, rgb+flow, 8 segments at 112 px -> train cpr_clip_plus, hash text encoder), then starts
the real server in a subprocess (``python -m pipeline serve``) and, from ``--clients`` client
threads at once, sends ``--takes`` takes of 2 views each to ``POST /predict``. Meanwhile one
thread asks ``GET /health`` every 50 ms and another samples the server's resident memory.

It then checks the limits under load: ``max_queue + 3`` more takes sent at once through
``POST /jobs`` (the ones beyond the queue must be refused with 503, not queued without bound),
and an upload of the issue's 64x48 x 60,000-frame file (must be a 413 from its header).

Prints a Markdown table (docs/reliability.md, "Server load", quotes it): takes answered and
their status codes, take latency, /health latency (median, 99th percentile, max) while takes
run, the server's peak resident memory (VmHWM) against its memory when idle, and the limits.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assist.client import post_take  # noqa: E402


def build_run(work: Path) -> tuple[Path, list[Path]]:
    """A finished cpr_clip_plus run under ``work`` (made once) and the 2 views of a composite
    take to send. Returns (config, take videos)."""
    config = work / "bench.toml"
    manifest = work / "data" / "bench" / "manifest.csv"
    run = work / "runs" / "cpr_clip_plus" / "checkpoint.safetensors"
    if not run.is_file():
        work.mkdir(parents=True, exist_ok=True)
        config.write_text(f'[common]\ndataset = "bench"\nmanifest = "{manifest}"\n'
                          f'features_dir = "{work / "features"}"\nruns_dir = "{work / "runs"}"\n'
                          'seed = 0\n')
        steps = [
            ["synth", "participants=2", "held_out=1", "frames=48", "resolution=160x120",
             "n_double=2", "n_triple=1", "n_quad=0", "views=2", "workers=1"],
            ["flow", "method=farneback", "short_side=0", "workers=1"],
            ["extract", "backbone=tsn_r18", "modalities=rgb,flow", "segments=8", "short_side=112",
             "crop_size=112", "checkpoint=none", "workers=0", "device=cpu", "min_frames=8"],
            ["train", "backbone=tsn_r18", "segments=8", "modalities=rgb,flow",
             "models=cpr_clip_plus", "epochs=2", "text_encoder=test_hash",
             "imagine_per_epoch=32", "batch_size=16", "hidden_dim=32", "device=cpu"],
        ]
        env = dict(os.environ, CPRCLIP_NO_PROGRESS="1", PYTHONPATH=str(ROOT))
        for step in steps:
            print(f"building the run: cprclip {step[0]}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "pipeline", step[0], "--config", str(config),
                            *step[1:]], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    videos = sorted((manifest.parent / "videos").glob("*.mp4"))
    composite = sorted({v.stem.rsplit("_v", 1)[0] for v in videos if "-" in v.stem})
    take = [v for v in videos if v.stem.rsplit("_v", 1)[0] == composite[0]][:2]
    return config, take


def post(url: str, paths: list[Path], timeout: float = 600) -> tuple[int, dict, float]:
    """POST one take to ``url`` (<server>/predict or <server>/jobs): (status, answer, seconds)."""
    base, endpoint = url.rsplit("/", 1)
    return post_take(base, paths, timeout=timeout, endpoint="/" + endpoint)


def rss_kib(pid: int, field: str) -> int:
    """VmRSS / VmHWM of ``pid`` in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--takes", type=int, default=12)
    ap.add_argument("--clients", type=int, default=6, help="takes in flight at once")
    ap.add_argument("--concurrent-takes", type=int, default=2,
                    help="the server's max_concurrent_takes")
    ap.add_argument("--max-queue", type=int, default=8, help="the server's max_queue")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "cprclip-bench-serve"))
    args = ap.parse_args()

    work = Path(args.work)
    config, take = build_run(work)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, CPRCLIP_NO_PROGRESS="1", PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--config", str(config), f"port={port}",
         "run=cpr_clip_plus", f"max_concurrent_takes={args.concurrent_takes}",
         f"max_queue={args.max_queue}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "w"))
    try:
        t0 = time.time()
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    health = json.load(r)
                break
            except OSError:
                if server.poll() is not None or time.time() - t0 > 120:
                    raise SystemExit(f"the server did not start; see {work / 'server.log'}")
                time.sleep(0.2)
        post(base + "/predict", take)  # warm-up: first-call costs are not load
        idle_rss = rss_kib(server.pid, "VmRSS")

        stop = threading.Event()
        health_ms: list[float] = []
        health_bad = 0
        rss_peak = 0

        def poll_health() -> None:
            nonlocal health_bad
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    with urllib.request.urlopen(base + "/health", timeout=10) as r:
                        ok = r.status == 200
                except OSError:
                    ok = False
                health_ms.append((time.perf_counter() - t) * 1000)
                health_bad += not ok
                time.sleep(0.05)

        def sample_rss() -> None:
            nonlocal rss_peak
            while not stop.is_set():
                rss_peak = max(rss_peak, rss_kib(server.pid, "VmRSS"))
                time.sleep(0.05)

        watchers = [threading.Thread(target=poll_health), threading.Thread(target=sample_rss)]
        for w in watchers:
            w.start()
        results: list[tuple[int, float]] = []
        lock = threading.Lock()
        todo = list(range(args.takes))

        def client() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    todo.pop()
                code, _, secs = post(base + "/predict", take)
                with lock:
                    results.append((code, secs))

        t_load = time.perf_counter()
        clients = [threading.Thread(target=client) for _ in range(args.clients)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        load_s = time.perf_counter() - t_load
        stop.set()
        for w in watchers:
            w.join()

        # Beyond the queue: jobs sent at once; the extra ones must be refused (503), not queued.
        burst = args.max_queue + args.concurrent_takes + 3
        codes: list[int] = []

        def start_job() -> None:
            code, _, _ = post(base + "/jobs", take)
            with lock:
                codes.append(code)

        starters = [threading.Thread(target=start_job) for _ in range(burst)]
        for s in starters:
            s.start()
        for s in starters:
            s.join()

        # The file: 64x48, 60,000 frames (~840 KB): refused from its header.
        from pipeline.ffmpeg import ffmpeg_exe

        long_clip = work / "long_60000.mp4"
        if not long_clip.is_file():
            subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                            "color=c=gray:size=64x48:rate=25", "-frames:v", "60000", "-c:v",
                            "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                            str(long_clip)], check=True)
        long_code, long_body, long_s = post(base + "/predict", [long_clip])
        hwm = rss_kib(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(30)

    ok = [s for c, s in results if c == 200]
    by_code: dict[int, int] = {}
    for c, _ in results:
        by_code[c] = by_code.get(c, 0) + 1
    jobs: dict[int, int] = {}
    for c in codes:
        jobs[c] = jobs.get(c, 0) + 1
    cpus = os.cpu_count()
    print(f"Machine: {platform.machine()}, {cpus} CPU(s), Python {platform.python_version()}; "
          f"run: {health['run']} ({health['backbone']}, {', '.join(health['modalities'])}); "
          f"server: max_concurrent_takes={args.concurrent_takes}, max_queue={args.max_queue}.\n")
    print("| measure | value |\n|---|---|")
    print(f"| takes sent (2 views each, {args.clients} clients at once) | {args.takes} |")
    print(f"| answered, by status | {', '.join(f'{k}: {v}' for k, v in sorted(by_code.items()))} |")
    if ok:
        print(f"| take latency, median / max | {statistics.median(ok):.2f} s / {max(ok):.2f} s |")
    print(f"| takes per second | {len(ok) / load_s:.2f} |")
    print(f"| `/health` during the load: requests, failed | {len(health_ms)}, {health_bad} |")
    if health_ms:
        print(f"| `/health` latency, median / p99 / max | {statistics.median(health_ms):.1f} / "
              f"{pct(health_ms, 0.99):.1f} / {max(health_ms):.1f} ms |")
    print(f"| server memory idle (after one take) / peak sampled / VmHWM | {idle_rss / 1024:.0f} / "
          f"{rss_peak / 1024:.0f} / {hwm / 1024:.0f} MiB |")
    print(f"| {burst} jobs sent at once to `POST /jobs` (max_queue {args.max_queue}) | "
          f"{', '.join(f'{k}: {v}' for k, v in sorted(jobs.items()))} |")
    print(f"| 64x48 x 60,000 frames ({long_clip.stat().st_size // 1024} KB) to `/predict` | "
          f"{long_code} in {long_s:.2f} s: {long_body.get('detail', '')} |")


if __name__ == "__main__":
    main()
