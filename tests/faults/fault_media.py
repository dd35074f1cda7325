"""Bad and odd media for the fault-injection suite, generated with the project's ffmpeg."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

from pipeline.ffmpeg import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "extract"))
from extract_helpers import known_frames  # noqa: E402  (the extract tests' frame generator)

HEADER = ["video_id", "path", "take_id", "view", "participant", "split", "labels", "flow"]


def ffmpeg(*args: str, stdin: bytes | None = None) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], input=stdin, check=True)


def frames(n: int = 24, h: int = 36, w: int = 48, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8 frames with texture and a moving square (so motion and flow exist)."""
    return known_frames(n, h, w, seed, signature=False)


def encode(path: Path, fr: np.ndarray, fps: float = 25, codec: tuple[str, ...] = (
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "23"), gop: int = 10,
        extra_out: tuple[str, ...] = ()) -> Path:
    n, h, w, _ = fr.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-",
           *codec, "-g", str(gop), *extra_out, str(path), stdin=fr.tobytes())
    return path


def good(path: Path, seed: int = 0, n: int = 24) -> Path:
    return encode(path, frames(n, seed=seed))


def make_bad_videos(folder: Path) -> dict[str, Path]:
    """Every bad/odd video case of issue 7, part 1. Returns {case: path}.

    libx265 in the bundled ffmpeg aborts below 64x64, so the 10-bit HEVC clip is 64x64.
    """
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    p = folder / "empty.mp4"
    p.write_bytes(b"")
    out["empty"] = p
    src = good(folder / "_src.mp4", seed=1, n=48)
    data = src.read_bytes()
    p = folder / "truncated.mp4"
    p.write_bytes(data[: len(data) // 2])  # mid-stream: moov may be at the end -> unreadable
    out["truncated"] = p
    # Truncated with the index first (faststart): the header promises frames that are gone.
    fs = folder / "_faststart.mp4"
    encode(fs, frames(48, seed=2), extra_out=("-movflags", "+faststart"))
    d = fs.read_bytes()
    p = folder / "truncated_faststart.mp4"
    p.write_bytes(d[: int(len(d) * 0.6)])
    out["truncated_faststart"] = p
    p = folder / "random.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    out["random"] = p
    p = folder / "audio_only.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(p))
    out["audio_only"] = p
    png = folder / "_still.png"
    ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x36", "-i", "-", "-frames:v", "1",
           str(png), stdin=frames(1)[0].tobytes())
    p = folder / "still_image.mp4"
    p.write_bytes(png.read_bytes())
    out["still_image"] = p
    # Corrupt key frame: overwrite bytes inside the first key frame's slice data (after the
    # headers) with garbage; the container stays valid.
    p = folder / "corrupt_keyframe.mp4"
    raw = bytearray(encode(folder / "_ck.mp4", frames(48, seed=3), gop=48).read_bytes())
    mdat = raw.find(b"mdat")
    start = mdat + 4 + 800  # skip the SEI/SPS/PPS that x264 writes first
    raw[start:start + 400] = np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8).tobytes()
    p.write_bytes(bytes(raw))
    out["corrupt_keyframe"] = p
    # Variable frame rate: timestamps with irregular gaps (mkv keeps them as given).
    vfr_dir = folder / "_vfr"
    vfr_dir.mkdir(exist_ok=True)
    fr = frames(30, seed=4)
    lines = []
    for i in range(30):
        img = vfr_dir / f"{i:03d}.png"
        ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x36", "-i", "-", "-frames:v", "1",
               str(img), stdin=fr[i].tobytes())
        lines += [f"file '{img}'", f"duration {0.02 if i % 3 else 0.1:.2f}"]
    (vfr_dir / "list.txt").write_text("\n".join(lines) + "\n")
    p = folder / "vfr.mp4"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(vfr_dir / "list.txt"), "-fps_mode", "vfr",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", str(p))
    out["vfr"] = p
    p = folder / "rotated.mp4"
    tmp = good(folder / "_rot_src.mp4", seed=5)
    try:  # FFmpeg >= 6 sets the display matrix with -display_rotation ...
        ffmpeg("-display_rotation", "90", "-i", str(tmp), "-c", "copy", str(p))
    except subprocess.CalledProcessError:  # ... FFmpeg 5 (Debian 12's) only through the
        # rotate tag, which gives the same matrix here (the test checks the pixels)
        ffmpeg("-i", str(tmp), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(p))
    out["rotated"] = p
    p = folder / "hevc10.mp4"
    encode(p, frames(24, 64, 64, seed=6), codec=("-c:v", "libx265", "-pix_fmt", "yuv420p10le",
                                          "-x265-params", "log-level=error"))
    out["hevc10"] = p
    p = folder / "one_frame.mp4"
    encode(p, frames(1, seed=7))
    out["one_frame"] = p
    p = folder / "uhd_4096x2160.mp4"
    encode(p, frames(10, h=2160, w=4096, seed=8), codec=("-c:v", "libx264", "-pix_fmt", "yuv420p",
                                                        "-preset", "ultrafast", "-crf", "35"))
    out["uhd_4096x2160"] = p
    # Issue 16, item 15: two video streams of different content and size, the second flagged
    # default (decord read the other one, PyAV the first); and a cover picture beside the video.
    s0 = good(folder / "_stream0.mp4", seed=20)
    s1 = encode(folder / "_stream1.mp4", frames(24, 48, 64, seed=21))
    p = folder / "two_video_streams.mp4"
    ffmpeg("-i", str(s0), "-i", str(s1), "-map", "0:v", "-map", "1:v", "-c", "copy",
           "-disposition:v:0", "0", "-disposition:v:1", "default", str(p))
    out["two_video_streams"] = p
    p = folder / "cover_art.mp4"
    ffmpeg("-i", str(good(folder / "_cover_src.mp4", seed=22)), "-i", str(png), "-map", "0:v",
           "-map", "1:v", "-c:v:0", "copy", "-c:v:1", "png", "-disposition:v:1", "attached_pic",
           str(p))
    out["cover_art"] = p
    # Issue 16, item 11: AV1, which decord 0.6 cannot decode, when this ffmpeg can encode it
    enc = av1_encoder()
    if enc:
        p = folder / "av1.mp4"
        encode(p, frames(24, seed=23), codec=("-c:v", enc, "-pix_fmt", "yuv420p",
                                              *AV1_FAST[enc]))
        out["av1"] = p
    return out


AV1_FAST = {"libaom-av1": ("-cpu-used", "8", "-crf", "20", "-b:v", "0"),
            "libsvtav1": ("-preset", "12", "-crf", "20")}


def av1_encoder() -> str | None:
    """The AV1 encoder of the project's ffmpeg (libaom-av1, libsvtav1), or None."""
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True,
                          text=True).stdout
    return next((e for e in AV1_FAST if f" {e} " in text), None)


def write_manifest(path: Path, rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def row(vid: str, rel: str, take: str | None = None, view: int = 1, labels: str = "0",
        flow: str = "") -> list:
    return [vid, rel, take or vid, view, "p1", "train", labels, flow]


def write_config(root: Path, manifest: Path | str = "manifest.csv") -> Path:
    """A config whose [common] points everything into ``root``."""
    cfg = root / "fault.toml"
    cfg.write_text(f'[common]\ndataset = "tiny"\nmanifest = "{manifest}"\n'
                   f'features_dir = "{root / "features"}"\nruns_dir = "{root / "runs"}"\nseed = 0\n')
    return cfg


# Small, fast extraction settings: random-init tsn_r18 at 32 px, 4 segments, no workers.
TINY_EXTRACT = ["backbone=tsn_r18", "segments=4", "short_side=32", "crop_size=32",
                "checkpoint=none", "workers=0", "device=cpu", "batch_videos=4", "min_frames=4"]


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]


def one_error_line(err: str, *must: str) -> str:
    """The stage's single ERROR line, which must contain each of ``must``; no traceback.

    Log lines look like ``HH:MM:SS ERROR <module>: <message>`` (pipeline.log.setup_logging)."""
    no_traceback(err)
    lines = [ln for ln in err.splitlines() if " ERROR " in ln]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{err[-3000:]}"
    for m in must:
        assert m in lines[0], f"{m!r} not in {lines[0]!r}"
    return lines[0]


# --- a tiny finished pipeline (extract + train), shared by the artifact fault suites ----------

def TRAIN(cfg, *extra) -> list[str]:
    """``cprclip train`` arguments: cpr_clip_plus, 2 epochs, hash text encoder, tiny head."""
    return ["--config", str(cfg), "backbone=tsn_r18", "segments=4", "modalities=rgb",
            "models=cpr_clip_plus", "epochs=2", "text_encoder=test_hash", "imagine_per_epoch=16",
            "batch_size=16", "val_every=1", "hidden_dim=16", "device=cpu", *extra]


def build_pipe(root: Path) -> dict:
    """Tiny videos (14 classes x train/val, 3 composite test clips) -> `cprclip extract`
    (tsn_r18, 32 px, 4 segments) -> `cprclip train`. Returns the paths."""
    from pipeline.cli import main
    from pipeline.taxonomy import NUM_CLASSES, composite_label_sets

    rows = []
    sets = composite_label_sets()
    for k in range(NUM_CLASSES):
        for split, part in (("train", "p1"), ("val", "p5")):
            vid = f"{split}{k}"
            good(root / "videos" / f"{vid}.mp4", seed=k * 2 + (split == "val"), n=10)
            rows.append([vid, f"videos/{vid}.mp4", vid, 1, part, split, str(k), ""])
    for j in range(3):
        vid = f"test{j}"
        good(root / "videos" / f"{vid}.mp4", seed=100 + j, n=10)
        rows.append([vid, f"videos/{vid}.mp4", vid, 1, "p6", "test",
                     ";".join(map(str, sets[j * 11])), ""])
    m = write_manifest(root / "manifest.csv", rows)
    cfg = write_config(root, m)
    assert main(["extract", "--config", str(cfg), *TINY_EXTRACT, "modalities=rgb"]) == 0
    assert main(["train", *TRAIN(cfg)]) == 0
    return pipe_paths(root)


def pipe_paths(root: Path) -> dict:
    return {"root": root, "cfg": root / "fault.toml", "run": root / "runs" / "cpr_clip_plus",
            "feats": root / "features" / "tiny" / "tsn_r18-rgb-4seg.h5",
            "video": root / "videos" / "test0.mp4",
            "text_cache": root / "runs" / ".text_cache"}  # train's default text_cache_dir


def copy_pipe(pipe: dict, dst: Path) -> dict:
    """A private copy of a built pipe (videos, features, run), so a test can break it."""
    import json
    import shutil

    shutil.copytree(pipe["root"], dst, symlinks=True)
    write_config(dst, dst / "manifest.csv")
    rec_path = dst / "runs" / "cpr_clip_plus" / "config.json"
    rec = json.loads(rec_path.read_text())
    for v in rec.get("features", {}).values():
        v["path"] = v["path"].replace(str(pipe["root"]), str(dst))
    rec_path.write_text(json.dumps(rec))
    return pipe_paths(dst)
