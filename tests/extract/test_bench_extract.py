"""bench/extract.py's report: ratios to each peer, the busy-machine flag, in-place sections.

The benchmark itself is run by hand (``make bench-extract``); this checks only its arithmetic and
its markdown, on made-up figures.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_extract", ROOT / "bench" / "extract.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ARGS = argparse.Namespace(seconds=10, backbone="tsn_r18", short_side=256, crop_size=224,
                          repeats=3, videos=6, workers=2, threads=2, cpu_amp=False, batch=1,
                          device="cpu", cuda=False, decode_threads=-1)


def _rows():
    med = {"floor": 1.0, "ours": 1.2, "mmaction2": 3.0, "mmaction2+loader": 2.0}
    cpu = {"floor": 2.0, "ours": 2.5, "mmaction2": 4.0, "mmaction2+loader": 5.0}
    rss = {m: 800.0 for m in med}
    return [(250, med, cpu, rss, dict(rss))]


def test_render_gives_each_ratio_to_each_peer():
    text = _bench().render(ARGS, _rows(), 60.0, [0.0, 0.01])
    ours = next(line for line in text.splitlines() if "**ours**" in line)
    cells = [c.strip() for c in ours.strip("|").split("|")]
    # GOP, name, s/video, CPU s, vs mmaction2, vs mmaction2+loader, vs floor, RSS
    assert cells[2:7] == ["1.20", "2.50", "0.40x / 0.62x", "0.60x / 0.50x", "1.20x / 1.25x"]
    assert "a quiet machine" in text and "busy" not in text


def test_render_on_cuda_adds_videos_per_second_and_gpu_utilisation():
    rows = _rows()
    rows[0][1]["gpu_util"] = 87.0
    args = argparse.Namespace(**{**vars(ARGS), "device": "cuda", "cuda": True, "batch": 8})
    text = _bench().render(args, rows, 60.0, [0.0])
    assert "videos/s | GPU util (ours) |" in text and "bf16 autocast on CUDA" in text
    ours = next(line for line in text.splitlines() if "**ours**" in line)
    assert ours.endswith("| 0.83 | 87% |")  # 1 / 1.2 s per video
    floor = next(line for line in text.splitlines() if "| floor |" in line)
    assert floor.endswith("| 1.00 | - |")


def test_gpu_utilisation_is_none_on_cpu():
    import torch

    with _bench().GpuUtilisation(torch.device("cpu")) as u:
        pass
    assert u.mean is None and u.samples == []


def test_render_flags_a_busy_machine():
    text = _bench().render(ARGS, _rows(), 60.0, [0.0, 0.35])
    assert "**the machine was busy**" in text and "max 35%" in text


def test_machine_busy_reads_proc_stat():
    b = _bench()
    t0 = b._machine_busy()
    sum(i * i for i in range(200_000))  # burn a little CPU
    assert b._machine_busy() >= t0 >= 0.0


def test_write_section_replaces_only_its_own_subsection(tmp_path):
    b = _bench()
    md = tmp_path / "benchmarks.md"
    md.write_text("# Benchmarks\n\n## Training\n\nkeep me\n\n## Memory\n\nand me\n")
    b.write_section(md, "run A", "first")
    b.write_section(md, "run B", "second")
    b.write_section(md, "run A", "third")
    text = md.read_text()
    assert text.count("### run A") == 1 and "third" in text and "first" not in text
    assert "second" in text and "keep me" in text and "and me" in text
    # A missing "## Extraction" is appended after the other sections, and runs go under it.
    assert text.index("## Memory") < text.index("## Extraction") < text.index("### run A")


def test_testsrc2_clip_without_an_ffmpeg_program(tmp_path, monkeypatch):
    """Where no ffmpeg program exists (the GPU machine holds only Python packages), the bench's
    clip is encoded through PyAV with the same GOP: key frames every ``gop`` frames only."""
    import sys

    import av

    from pipeline import ffmpeg

    sys.path.insert(0, str(ROOT / "bench"))
    import memory

    def missing():
        raise ffmpeg.FFmpegNotFound("none here")

    monkeypatch.setattr(ffmpeg, "ffmpeg_exe", missing)
    clip = memory.make_clip(tmp_path / "c.mp4", gop=10, seconds=1.2, size="64x48")
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (64, 48)
        keys = [p.is_keyframe for p in c.demux(s) if p.size]
    assert len(keys) == 30
    assert [i for i, k in enumerate(keys) if k] == [0, 10, 20]
    assert not list(tmp_path.glob("*.tmp.mp4"))
