"""Extraction speed and memory on 4K H.264, against the decode floor and mmaction2's pipeline.

    .venv/bin/python bench/extract.py [--backbone tsn_r18|tsn_r50] [--repeats 3] [--videos 6] [--cpu-amp]

Generates 3840x2160, 25 fps, 10 s clips with ffmpeg's testsrc2 (GOP 250 and GOP 25; cached in
--data), then, for each GOP, runs each measure in a fresh subprocess (``--repeats`` times) and
reports the median seconds per video and the peak RSS (``ru_maxrss``):

- ``floor``: our decoder interface alone (``--decoder``; ``auto`` picks decord for these clips,
  with FFmpeg's own frame threads), resized in the decoder to the short side, fetching the 8 TSN
  test frames of each video, one video after another;
- ``ours``: ``extract.runner.extract_modality`` end to end (decode workers, crop, normalise,
  backbone, HDF5 shards) with the model built before the clock starts;
- ``mmaction2``: mmaction2's own test pipeline (DecordInit -> SampleFrames(1x1x8, test) ->
  DecordDecode -> Resize(-1, short) -> CenterCrop -> FormatShape -> PackActionInputs) and
  ``test_step`` of the same recognizer, one video after another, model built before timing
  (the issue's definition of the peer);
- ``mmaction2+loader``: the same pipeline in a torch DataLoader with ``--workers`` processes and
  mmengine's ``pseudo_collate``, as mmaction2's ``tools/test.py`` runs it, so its decoding
  overlaps the model just as ours does.

Every child imports its libraries (torch, decord, PyAV, mmaction2) before its clock starts, so
the figures are per-video steady-state costs, not start-up. Each subprocess handles ``--videos``
videos (the clip repeated). Around every child the parent reads the machine's busy CPU time
(/proc/stat) and the child's own (rusage), and reports what other processes used, so a run on a
busy machine says so. The table goes to the "## Extraction"
section of docs/benchmarks.md (other sections are left alone).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOPS = (250, 25)


def make_clip(path: Path, gop: int, seconds: int) -> Path:
    """A 3840x2160 25 fps testsrc2 clip (cached at ``path``), made as bench/memory.py makes its."""
    from memory import make_clip as make

    return make(path, gop, seconds, size="3840x2160")


def _cpu() -> float:
    """CPU seconds of this process plus its reaped children (decode workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime + _cpu_children()


def _rss() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rss_mb": me, "rss_children_mb": kids}


# ---------------------------------------------------------------- children (one measure each)

def _warm_imports() -> None:
    """Import the decoders' modules before a clock starts (workers fork with them loaded)."""
    import importlib

    for mod in ("av", "decord"):
        importlib.import_module(mod)


def child_floor(videos: list[Path], a) -> dict:
    from extract.decoders import open_video
    from extract.sampling import segment_indices

    _warm_imports()

    times = []
    c0 = _cpu()
    for v in videos:
        t = time.perf_counter()
        with open_video(v, a.decoder, resize_short=a.short_side) as r:
            frames = r.get(segment_indices(r.num_frames, 8).reshape(-1), a.short_side)
        times.append(time.perf_counter() - t)
        assert frames.shape[0] == 8
    return {"per_video_s": statistics.median(times), "cpu_per_video_s": (_cpu() - c0) / len(videos),
            "times": times}


def child_ours(videos: list[Path], a) -> dict:
    import csv

    import torch

    from extract.runner import ExtractConfig, FeatureModel, _load_records, extract_modality

    work = Path(tempfile.mkdtemp(prefix="bench-ours-", dir=videos[0].parent))
    man = videos[0].parent / f"manifest-{os.getpid()}.csv"
    with man.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "path", "take_id", "view", "participant", "split", "labels", "flow"])
        for i, v in enumerate(videos):
            w.writerow([f"v{i}", v.name, f"t{i}", 1, "p1", "test", "0", ""])
    cfg = ExtractConfig(dataset="bench", manifest=str(man), features_dir=str(work),
                        backbone=a.backbone, modalities=("rgb",), short_side=a.short_side,
                        crop_size=a.crop_size, checkpoint="none", workers=a.workers,
                        decoder=a.decoder, cpu_amp=a.cpu_amp,
                        batch_videos=a.batch, min_frames=1, device=a.device)
    torch.set_num_threads(a.threads)
    _warm_imports()
    if a.decode_threads >= 0:  # a fixed count in every worker, e.g. 0: FFmpeg's own (the old way)
        import extract.runner as runner

        runner.init_decode_worker = functools.partial(_init_fixed_threads, threads=a.decode_threads)
    dev = torch.device(a.device)
    fm = FeatureModel(cfg, "rgb", None, dev)
    fm(torch.zeros(a.batch, 1, 8, a.crop_size, a.crop_size, 3, dtype=torch.uint8))  # warm up
    records = _load_records(cfg)
    c0 = _cpu()
    with GpuUtilisation(dev) as util:
        t = time.perf_counter()
        res = extract_modality(cfg, "rgb", records, dev, model=fm)
        wall = time.perf_counter() - t
    cpu = _cpu() - c0
    man.unlink()
    shutil.rmtree(work, ignore_errors=True)
    assert res.extracted == len(videos), res
    return {"per_video_s": wall / len(videos), "cpu_per_video_s": cpu / len(videos), "wall_s": wall,
            "gpu_util": util.mean}


class GpuUtilisation:
    """Mean GPU utilisation (%) over a ``with`` block, sampled every 0.2 s from nvidia-smi (or
    torch.cuda.utilization); ``mean`` stays None on CPU or where neither can be read."""

    def __init__(self, device):
        self.device, self.samples, self.mean = device, [], None
        self._stop = None

    def _read(self) -> float | None:
        import torch

        idx = self.device.index or 0
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                "--format=csv,noheader,nounits", "-i", str(idx)],
                               capture_output=True, text=True, timeout=5)
            return float(r.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            pass
        try:
            return float(torch.cuda.utilization(idx))
        except Exception:  # noqa: BLE001 - no pynvml / no driver query
            return None

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            v = self._read()
            if v is not None:
                self.samples.append(v)

    def __enter__(self):
        import threading

        if self.device.type == "cuda":
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self.mean = statistics.mean(self.samples) if self.samples else None


def _init_fixed_threads(worker_id: int, workers: int = 1, threads: int = 0) -> None:
    from extract.decoders import init_decode_worker, set_decode_threads

    init_decode_worker(worker_id, workers)
    set_decode_threads(threads)


def _mmaction_setup(a):
    """mmaction2's test pipeline (as its TSN test configs write it) and the same recognizer."""
    import torch
    from mmengine.dataset import Compose

    from extract.backbones import build_recognizer

    torch.set_num_threads(a.threads)
    _warm_imports()
    model = build_recognizer(a.backbone, "rgb").eval()  # also imports mmaction2 (registered)
    model.to(a.device)  # its data preprocessor moves each batch there
    pipeline = Compose([
        dict(type="DecordInit"),
        dict(type="SampleFrames", clip_len=1, frame_interval=1, num_clips=8, test_mode=True),
        dict(type="DecordDecode"),
        dict(type="Resize", scale=(-1, a.short_side)),
        dict(type="CenterCrop", crop_size=a.crop_size),
        dict(type="FormatShape", input_format="NCHW"),
        dict(type="PackActionInputs"),
    ])
    return model, pipeline


def _mm_input(v: Path) -> dict:
    return dict(filename=str(v), label=-1, start_index=0, modality="RGB")


def child_mmaction(videos: list[Path], a) -> dict:
    import torch

    model, pipeline = _mmaction_setup(a)
    times = []
    c0 = _cpu()
    with torch.no_grad():
        for v in videos:
            t = time.perf_counter()
            data = pipeline(_mm_input(v))
            out = model.test_step(dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]))
            times.append(time.perf_counter() - t)
            assert len(out) == 1
    return {"per_video_s": statistics.median(times), "cpu_per_video_s": (_cpu() - c0) / len(videos),
            "times": times}


class _MMDataset:
    """A map-style dataset of mmaction2 pipeline outputs (picklable for loader workers)."""

    def __init__(self, videos: list[Path], pipeline):
        self.videos, self.pipeline = videos, pipeline

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        return self.pipeline(_mm_input(self.videos[i]))


def child_mmaction_loader(videos: list[Path], a) -> dict:
    import torch
    from mmengine.dataset import pseudo_collate

    model, pipeline = _mmaction_setup(a)
    c0 = _cpu()
    t = time.perf_counter()
    loader = torch.utils.data.DataLoader(_MMDataset(videos, pipeline), batch_size=1,
                                         num_workers=a.workers, collate_fn=pseudo_collate)
    n = 0
    with torch.no_grad():
        for batch in loader:
            n += len(model.test_step(batch))
    wall = time.perf_counter() - t
    assert n == len(videos)
    return {"per_video_s": wall / len(videos), "cpu_per_video_s": (_cpu() - c0) / len(videos),
            "wall_s": wall}


CHILDREN = {"floor": child_floor, "ours": child_ours, "mmaction2": child_mmaction,
            "mmaction2+loader": child_mmaction_loader}


# ---------------------------------------------------------------- parent

def run_child(measure: str, clip: Path, a) -> dict:
    cmd = [sys.executable, __file__, "--child", measure, "--clip", str(clip),
           "--videos", str(a.videos), "--backbone", a.backbone, "--short-side", str(a.short_side),
           "--crop-size", str(a.crop_size), "--workers", str(a.workers), "--threads", str(a.threads),
           "--decoder", a.decoder, "--device", a.device, "--batch", str(a.batch),
           "--decode-threads", str(a.decode_threads)] + (
               ["--cpu-amp"] if a.cpu_amp else [])
    env = dict(os.environ, CPRCLIP_NO_PROGRESS="1", CPRCLIP_LOG="WARNING")
    busy0, kids0, t0 = _machine_busy(), _cpu_children(), time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{measure} on {clip.name} failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    other = (_machine_busy() - busy0) - (_cpu_children() - kids0)
    out["others"] = max(0.0, other) / (wall * (os.cpu_count() or 1))  # share of all cores
    return out


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (/proc/stat; 0 where there is none)."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = f[3] + (f[4] if len(f) > 4 else 0)  # idle + iowait
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_children() -> float:
    k = resource.getrusage(resource.RUSAGE_CHILDREN)
    return k.ru_utime + k.ru_stime


def machine() -> str:
    from pipeline.runtime import cpu_model

    cpu = cpu_model()
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return f"{os.cpu_count()}-core CPU ({cpu}), {gpu}"


INTRO = """## Extraction

`make bench-extract` (bench/extract.py): seconds per video on generated 4K H.264 clips, for the
decode floor, our extract and mmaction2's own test pipeline with the same recognizer. Targets
(issue 3): ours <= 0.6x mmaction2, ours <= 1.3x the decode floor, peak RSS under 3 GB on a 4K
clip. Each subsection is one run of the command it names.
"""


def write_section(md: Path, title: str, body: str) -> None:
    """Put ``### title`` + body into the "## Extraction" section, replacing the same title."""
    head = "# Benchmarks\n\nFigures from real runs; each section names its command and machine.\n"
    text = md.read_text() if md.exists() else head
    start = text.find("## Extraction")
    if start < 0:
        text = text.rstrip() + "\n\n" + INTRO
        start = text.find("## Extraction")
    nxt = text.find("\n## ", start + 1)
    end = nxt + 1 if nxt >= 0 else len(text)
    sec = text[start:end]
    sub = f"### {title}\n"
    i = sec.find(sub)
    block = sub + "\n" + body.strip() + "\n\n"
    if i >= 0:
        j = sec.find("\n### ", i + 1)
        sec = sec[:i] + block + (sec[j + 1:] if j >= 0 else "")
    else:
        sec = sec.rstrip() + "\n\n" + block
    md.write_text((text[:start] + sec.rstrip() + "\n\n" + text[end:]).rstrip() + "\n")


MEASURES = ("floor", "ours", "mmaction2", "mmaction2+loader")
PEERS = ("mmaction2", "mmaction2+loader", "floor")


def threads_text(a) -> str:
    if a.decode_threads == 0:
        return "FFmpeg's own decoder threads in each"
    if a.decode_threads > 0:
        return f"{a.decode_threads} decoder thread(s) each"
    return "one decoder thread each" if a.workers >= 2 else "FFmpeg's own decoder threads"


def precision(a) -> str:
    if a.cuda:
        return "bf16 autocast on CUDA"
    return f"{'bf16' if a.cpu_amp else 'fp32'} on CPU"


def render(a, rows, took: float, others: list[float]) -> str:
    """The markdown for one run: setting, load, and the table with ratios to each peer."""
    cmd = " ".join(["python bench/extract.py"] + sys.argv[1:])
    busy = max(others) > 0.10  # other processes took over a tenth of the machine in some run
    lines = [
        f"Command: `{cmd}` ({time.strftime('%Y-%m-%d')}; {took / 60:.1f} min). Machine: "
        f"{machine()}. Other processes used a median {100 * statistics.median(others):.0f}% "
        f"(max {100 * max(others):.0f}%) of the machine's CPU during the measured runs"
        + (": **the machine was busy**, so times are inflated." if busy else ": a quiet machine."),
        "",
        f"Setting: ffmpeg testsrc2 clips, 3840x2160, 25 fps, {a.seconds} s, H.264 (x264 "
        f"ultrafast, yuv420p); backbone {a.backbone}, 8 segments (TSN test sampling), short "
        f"side {a.short_side}, centre crop {a.crop_size}, RGB. Each figure is the median of "
        f"{a.repeats} runs in fresh processes, each over {a.videos} videos; imports and model "
        f"building are not timed. Ours: {a.workers} decode worker(s) ({threads_text(a)}), "
        f"batch of {a.batch} video(s), torch threads {a.threads}, {precision(a)}. "
        f"mmaction2 (fp32, on {a.device}): its test pipeline "
        "(DecordInit with its default 1 thread) and `test_step`, one process; "
        f"mmaction2+loader: the same in a DataLoader with {a.workers} workers. Peak RSS is "
        "`ru_maxrss` of the measuring process (and of its largest worker).",
        "",
        "Wall-clock seconds per video, CPU seconds per video (all processes), and each as a "
        "ratio to the peers (wall / CPU):",
        "",
        "| GOP | measure | s/video | CPU s/video | vs mmaction2 | vs mmaction2+loader "
        "| vs floor | peak RSS |" + (" videos/s | GPU util (ours) |" if a.cuda else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if a.cuda else ""),
    ]
    for g, med, cpu, rss, kids in rows:
        for m in MEASURES:
            mem = f"{rss[m]:.0f} MB" + (f" + {kids[m]:.0f} MB per worker"
                                        if m in ("ours", "mmaction2+loader") else "")
            ratios = " | ".join(f"{med[m] / med[p]:.2f}x / {cpu[m] / cpu[p]:.2f}x" for p in PEERS)
            name = f"**{m}**" if m == "ours" else m
            gpu = ""
            if a.cuda:
                u = med.get("gpu_util") if m == "ours" else None
                gpu = f" {1 / med[m]:.2f} | " + (f"{u:.0f}% |" if u is not None else "- |")
            lines.append(f"| {g} | {name} | {med[m]:.2f} | {cpu[m]:.2f} | {ratios} | {mem} |"
                         + gpu)
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="tsn_r18", help="tsn_r18 (default, fast) or tsn_r50")
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--videos", type=int, default=6, help="videos per measured run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10, help="clip length")
    p.add_argument("--workers", type=int, default=2, help="our decode worker processes")
    p.add_argument("--decoder", default="auto", help="our decoder (floor and ours); auto as in extract")
    p.add_argument("--cpu-amp", action="store_true", help="ours: bf16 autocast on CPU")
    p.add_argument("--device", default="auto",
                   help="auto (cuda when present), cpu or cuda[:N]: where the models run; "
                        "ours uses bf16 autocast on CUDA, mmaction2 its fp32 test_step")
    p.add_argument("--batch", type=int, default=1, help="ours: videos per forward")
    p.add_argument("--decode-threads", type=int, default=-1,
                   help="ours: decoder threads in every worker; -1 (default) = the pipeline's "
                        "rule (1 each when workers >= 2), 0 = FFmpeg's own choice")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    p.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "cprclip-bench"))
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--clip", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.device == "auto":
        import torch

        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    a.cuda = a.device.startswith("cuda")

    if a.child:
        import logging

        logging.basicConfig(level=logging.WARNING)
        out = CHILDREN[a.child]([Path(a.clip)] * a.videos, a)
        out.update(_rss())
        sys.stdout.write(json.dumps(out) + "\n")
        return 0

    data = Path(a.data)
    clips = {g: make_clip(data / f"testsrc2-4k-{a.seconds}s-gop{g}.mp4", g, a.seconds) for g in GOPS}
    rows = []
    others: list[float] = []
    t_all = time.time()
    for g, clip in clips.items():
        res: dict[str, list[dict]] = {m: [] for m in CHILDREN}
        for _ in range(a.repeats):
            for m in CHILDREN:  # interleave measures so load changes hit all alike
                res[m].append(run_child(m, clip, a))
                others.append(res[m][-1]["others"])
                sys.stderr.write(f"gop {g} {m}: {res[m][-1]['per_video_s']:.2f} s/video, "
                                 f"{res[m][-1]['cpu_per_video_s']:.2f} CPU s/video, others "
                                 f"{100 * res[m][-1]['others']:.0f}%\n")
        med = {m: statistics.median(r["per_video_s"] for r in rs) for m, rs in res.items()}
        cpu = {m: statistics.median(r["cpu_per_video_s"] for r in rs) for m, rs in res.items()}
        rss = {m: max(r["rss_mb"] for r in rs) for m, rs in res.items()}
        kids = {m: max(r["rss_children_mb"] for r in rs) for m, rs in res.items()}
        util = [r["gpu_util"] for r in res["ours"] if r.get("gpu_util") is not None]
        med["gpu_util"] = statistics.median(util) if util else None
        rows.append((g, med, cpu, rss, kids))
    took = time.time() - t_all
    section = render(a, rows, took, others)
    title = f"{a.backbone} at {a.crop_size}, decoder {a.decoder}, {precision(a)}" + (
        f", decode threads {a.decode_threads}" if a.decode_threads >= 0 else "")
    sys.stdout.write(f"### {title}\n\n{section}\n")
    if not a.no_write:
        write_section(Path(a.out), title, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
