"""Peak memory of `cprclip extract` on a long 4K video, for two GOP lengths (issue 7, part 4).

    .venv/bin/python bench/memory.py [--minutes 2] [--gops 250 25] [--decoders decord pyav]

Generates a 4096x2160, 25 fps H.264 clip (ffmpeg testsrc2, ultrafast; cached in --data) per
GOP length, writes a one-row manifest, and runs the real CLI (``python -m pipeline extract``,
rgb, tsn_r18 random init, 8 segments, short side 256, centre crop 224, workers=0 so decoding
happens in the measured process) in a fresh subprocess per (GOP, decoder). Peak RSS is the
child's ``ru_maxrss``; a baseline run on a 10-frame 160x120 clip gives the cost of Python,
torch and the model alone, so the difference is what the 4K video adds.

Long clips are one encoded minute concatenated without re-encoding (``make_long_clip``), so the
issue's 20 minutes (``--minutes 20``, the default) cost seconds to make. Decoders: ``decord``,
``pyav`` and ``auto`` (extract's default: decord for short videos, PyAV for long ones). Results go
to the "## Memory" section of docs/benchmarks.md (other sections are left alone).
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_clip(path: Path, gop: int, seconds: float, size: str = "4096x2160") -> Path:
    """The testsrc2 clip, made by the ffmpeg program, or through PyAV's own FFmpeg libraries
    where no ffmpeg program is installed (a GPU machine that holds only Python packages)."""
    from pipeline.ffmpeg import FFmpegNotFound, ffmpeg_exe

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.mp4")
    try:
        exe = ffmpeg_exe()
    except FFmpegNotFound:
        encode_testsrc2(tmp, gop, seconds, size)
        os.replace(tmp, path)
        return path
    subprocess.run([exe, "-y", "-loglevel", "error", "-f", "lavfi",
                    "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", str(tmp)],
                   check=True)
    os.replace(tmp, path)
    return path


def encode_testsrc2(path: Path, gop: int, seconds: float, size: str) -> int:
    """The same clip as the ffmpeg command in :func:`make_clip` (testsrc2, libx264 ultrafast,
    yuv420p, a key frame every ``gop`` frames and none elsewhere), encoded with PyAV. Returns the
    number of frames."""
    import av
    from av.filter import Graph

    w, h = (int(v) for v in size.split("x"))
    graph = Graph()
    src = graph.add("testsrc2", f"size={size}:rate=25:duration={seconds}")
    sink = graph.add("buffersink")
    src.link_to(sink)
    graph.configure()
    n = 0
    with av.open(str(path), "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=25, options={
            "preset": "ultrafast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"})
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        while True:
            try:
                frame = sink.pull()
            except (av.error.EOFError, av.error.BlockingIOError):
                break
            frame = frame.reformat(format="yuv420p")
            # testsrc2 marks every frame as an I frame, which x264 would obey: let it choose
            frame.pict_type = av.video.frame.PictureType.NONE
            for packet in st.encode(frame):
                out.mux(packet)
            n += 1
        for packet in st.encode(None):
            out.mux(packet)
    return n


def make_long_clip(path: Path, gop: int, minutes: float) -> Path:
    """A ``minutes``-long 4K clip: one minute encoded once, then concatenated with ffmpeg's concat
    demuxer and ``-c copy`` (no re-encoding, so 20 minutes take seconds instead of an hour). The
    GOP structure is that of the one-minute clip."""
    from pipeline.ffmpeg import ffmpeg_exe

    if minutes <= 1:
        return make_clip(path, gop, minutes * 60)
    if path.is_file():
        return path
    one = make_clip(path.with_name(f"uhd_1min_gop{gop}.mp4"), gop, 60)
    reps = int(round(minutes))
    lst = path.with_name(path.name + ".txt")
    lst.write_text("".join(f"file '{one.name}'\n" for _ in range(reps)))
    tmp = path.with_name(path.name + ".tmp.mp4")
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0",
                    "-i", str(lst), "-c", "copy", str(tmp)], check=True)
    os.replace(tmp, path)
    lst.unlink()
    return path


def run_extract(video: Path, decoder: str, work: Path) -> tuple[float, float, int]:
    """(peak RSS MiB, wall seconds, exit code) of one `cprclip extract` subprocess."""
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # a fresh feature store: extract, never skip
    work.mkdir(parents=True, exist_ok=True)
    m = work / "manifest.csv"
    link = work / "v.mp4"  # a hard link: manifest paths may not leave the dataset folder
    link.unlink(missing_ok=True)
    os.link(video, link)
    with m.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "path", "take_id", "view", "participant", "split", "labels"])
        w.writerow(["v", "v.mp4", "t", 1, "p1", "train", "0"])
    cfg = work / "c.toml"
    cfg.write_text(f'[common]\ndataset = "bench"\nmanifest = "{m}"\n'
                   f'features_dir = "{work / "features"}"\nruns_dir = "{work / "runs"}"\n')
    cmd = [sys.executable, "-m", "pipeline", "extract", "--config", str(cfg), "backbone=tsn_r18",
           "modalities=rgb", "segments=8", "short_side=256", "crop_size=224", "checkpoint=none",
           "workers=0", "device=cpu", "batch_videos=1", f"decoder={decoder}"]
    env = dict(os.environ, CPRCLIP_NO_PROGRESS="1", PYTHONPATH=str(ROOT))
    t0 = time.time()
    # Through a wrapper so ru_maxrss is this one child's, not the max over earlier ones.
    wrapper = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]).returncode;"
               "print('MAXRSS',resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
               "sys.exit(r)")
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    wall = time.time() - t0
    mx = re.search(r"MAXRSS (\d+)", p.stdout)
    if p.returncode != 0 or not mx:
        sys.stderr.write(p.stderr[-3000:])
    return (int(mx.group(1)) / 1024 if mx else float("nan")), wall, p.returncode


def write_section(text: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    old = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pat = re.compile(r"^## Memory\n.*?(?=^## |\Z)", re.S | re.M)
    new = pat.sub(lambda _: text, old) if pat.search(old) else old.rstrip("\n") + "\n\n" + text
    doc.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--gops", type=int, nargs="+", default=[250, 25])
    ap.add_argument("--decoders", nargs="+", default=["decord", "pyav", "auto"])
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "cprclip-bench-memory"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave the docs alone")
    a = ap.parse_args()
    data = Path(a.data)
    rows = []
    base = make_clip(data / "baseline_160x120.mp4", 25, 0.4, size="160x120")
    for dec in a.decoders:
        rss, wall, rc = run_extract(base, dec, data / f"work-base-{dec}")
        rows.append(("160x120, 10 frames (baseline)", "-", dec, rss, wall, rc))
        print(rows[-1], flush=True)
    for gop in a.gops:
        t0 = time.time()
        clip = make_long_clip(data / f"uhd_{a.minutes:g}min_gop{gop}.mp4", gop, a.minutes)
        print(f"clip gop {gop}: {clip.stat().st_size / 2**20:.0f} MiB, made in "
              f"{time.time() - t0:.0f} s", flush=True)
        for dec in a.decoders:
            rss, wall, rc = run_extract(clip, dec, data / f"work-{gop}-{dec}")
            rows.append((f"4096x2160, {a.minutes:g} min", str(gop), dec, rss, wall, rc))
            print(rows[-1], flush=True)
    lines = ["## Memory", "",
             f"Peak RSS of `cprclip extract` (one process: workers=0, rgb, tsn_r18 random init, "
             f"8 segments, short side 256, crop 224, CPU) on one H.264 4096x2160 25 fps clip "
             f"of {a.minutes:g} minutes ({int(a.minutes * 60 * 25)} frames; longer than one minute: "
             f"one encoded minute concatenated with `-c copy`), per GOP length and decoder; "
             f"the baseline row is a 10-frame 160x120 clip (Python, torch and the model "
             f"alone). Command: "
             f"`.venv/bin/python bench/memory.py --minutes {a.minutes:g}`. Machine: "
             f"{os.cpu_count()}-core CPU, no GPU, {platform.machine()}, shared with other jobs "
             "(wall times are indicative only).", "",
             "| clip | GOP | decoder | peak RSS (MiB) | wall (s) | exit |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {c} | {g} | {d} | {r:.0f} | {w:.0f} | {rc} |" for c, g, d, r, w, rc in rows]
    lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
