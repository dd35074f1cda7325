"""``cprclip info``: what this machine offers the pipeline."""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import platform
import sys

PACKAGES = ("torch", "torchvision", "numpy", "h5py", "decord", "av", "torchcodec", "opencv-contrib-python-headless",
            "open_clip_torch", "sentence-transformers", "mmaction2", "mmengine", "mmcv-lite",
            "imageio-ffmpeg", "ffmpeg-python")


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def collect() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    decoders = []
    for mod in ("decord", "av", "torchcodec"):
        try:
            importlib.import_module(mod if mod != "torchcodec" else "torchcodec.decoders")
            decoders.append(mod)
        except Exception:  # noqa: BLE001 - torchcodec fails without system FFmpeg libs
            pass
    out["decoders"] = ", ".join(decoders) or "none"
    try:
        import torch

        out["cuda"] = (f"yes: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
                       if torch.cuda.is_available() else "no")
    except Exception as e:  # noqa: BLE001
        out["cuda"] = f"unknown ({e})"
    try:
        from pipeline.ffmpeg import ffmpeg_exe

        out["ffmpeg"] = ffmpeg_exe()
    except Exception as e:  # noqa: BLE001
        out["ffmpeg"] = f"not found ({e})"
    from pipeline.provenance import code_version

    out["cprclip"] = code_version()
    return out


def main(args: argparse.Namespace) -> int:
    info = collect()
    width = max(map(len, info))
    for k, v in info.items():
        sys.stdout.write(f"{k:<{width}}  {v}\n")
    return 0
