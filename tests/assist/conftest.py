"""Fixtures for the assistant's tests (`cprclip serve`, `Assistant`): tiny videos, a stub model, and a tiny real run.

The API tests use :class:`StubAnalyser` (no model: fast, and it can block or crash on demand).
The end-to-end tests use ``tiny_run``: a tiny synthetic dataset pushed through the real
``cprclip synth -> flow -> extract -> train`` chain once per session.
"""
from __future__ import annotations

import hashlib
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from assist.server import InputProblem, ServeConfig, create_app


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives the page in headless Chromium (Debian's package; "
                   "`make browser-deps` installs it); skipped with a reason when it is absent")


def write_video(path: Path, n: int = 12, w: int = 48, h: int = 32, seed: int = 0) -> Path:
    """A tiny H.264 clip of noise plus a moving square; content depends on ``seed``."""
    from pipeline.ffmpeg import ffmpeg_exe

    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 80, (n, h, w, 3)).astype(np.uint8)
    for i in range(n):
        frames[i, 4:12, 2 + i:10 + i] = (200, 60 + 10 * (seed % 10), 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
                    "rgb24", "-s", f"{w}x{h}", "-r", "25", "-i", "-", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(path)], input=frames.tobytes(), check=True)
    return path


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> list[Path]:
    """Four different tiny clips."""
    root = tmp_path_factory.mktemp("clips")
    return [write_video(root / f"clip{k}.mp4", seed=k) for k in range(4)]


class StubAnalyser:
    """A stand-in model. It reads the bytes it was given, so a test can tell whose files it saw.

    - ``check_video``: a real decoder check (PyAV), so non-video files are refused as by the
      real model;
    - ``analyse``: reports one error whose id depends on the sha256 of the first video, and
      the sha256 of every video under ``sha``; records the paths it got;
    - ``crash = True`` makes the next ``analyse`` raise; ``gate`` (an Event) makes it wait;
    - ``verdict`` ("errors", "correct", "not_sure", "unsuitable") makes it answer as a calibrated
      assistant with that verdict (:func:`stub_prediction`), 4 real frames per view; None (the
      default) answers as an analyser older than the verdicts: no ``verdict`` field at all.
    """

    def __init__(self):
        self.seen: list[list[Path]] = []
        self.crash = False
        self.verdict: str | None = None
        self.measures: list[dict] | None = None  # rate/depth answers to add (stub_measures)
        self.gate: threading.Event | None = None
        self.entered = threading.Semaphore(0)

    def describe(self):
        return {"run": "stub", "model": "stub", "head": "bce", "score_kind": "probability",
                "threshold_source": "fixed", "backbone": "none", "modalities": ["rgb"],
                "warnings": []}

    def stages(self):
        return [("check", "Opening the videos"), ("score", "Comparing with the known errors")]

    def check_video(self, path: Path) -> None:
        from extract.decoders import open_video

        try:
            with open_video(path, "pyav") as r:
                if r.num_frames < 2:
                    raise InputProblem(f"{path}: one frame only", 415)
        except InputProblem:
            raise
        except Exception as e:  # noqa: BLE001
            raise InputProblem(f"{path}: not a readable video ({e})", 415) from None

    def analyse(self, videos, views, progress):
        from pipeline.taxonomy import ADVICE, CLASSES

        self.seen.append(list(videos))
        self.entered.release()
        progress("check")
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        if self.crash:
            self.crash = False
            raise RuntimeError(f"boom while reading {videos[0]}")
        progress("score")
        sha = {str(w): hashlib.sha256(v.read_bytes()).hexdigest() for v, w in zip(videos, views)}
        if self.verdict is not None:
            out = {**stub_prediction(self.verdict, list(views)), "sha": sha,
                   "frames": {str(w): stub_frames(v) for v, w in zip(videos, views)}}
            if self.measures is not None:
                out["measures"] = self.measures
            return out
        k = 1 + int(sha[str(views[0])], 16) % 13
        scores = {c: (0.9 if i == k else 0.1) for i, c in enumerate(CLASSES)}
        return {"views": list(views), "head": "bce", "errors": [
                    {"id": k, "name": CLASSES[k], "score": 0.9, "threshold": 0.5,
                     "advice": ADVICE[k]}],
                "looks_correct": False, "correct_detected": False, "scores": scores,
                "thresholds": {c: 0.5 for c in CLASSES}, "warnings": [], "sha": sha,
                "frames": {str(w): [] for w in views}}


def stub_prediction(verdict: str, views: list[int]) -> dict:
    """A calibrated assistant's answer with ``verdict``, made by the real
    :class:`assist.assistant.Prediction` so that its keys are the assistant's."""
    from assist.assistant import Detection, Prediction
    from pipeline.taxonomy import ADVICE, CLASSES

    marks = {c: (None if i == 0 else 0.5 + 0.02 * i) for i, c in enumerate(CLASSES)}
    probs = {c: 0.04 + 0.01 * i for i, c in enumerate(CLASSES)}

    def det(c: int, p: float) -> Detection:
        probs[CLASSES[c]] = p
        return Detection(c, CLASSES[c], 2 * p - 1, 0.1 * c, ADVICE[c], p, marks[CLASSES[c]])

    errors, cands, reason, check = [], [], "", None
    if verdict == "errors":
        errors, cands = [det(5, 0.86), det(10, 0.79)], [det(4, 0.49)]
        probs[CLASSES[0]] = 0.03
    elif verdict == "correct":
        probs[CLASSES[0]] = 0.94
    elif verdict == "not_sure":
        cands = [det(5, 0.55), det(10, 0.52), det(11, 0.3)]
        probs[CLASSES[0]] = 0.41
        reason = ("no mistake reached its mark, but Tilting Arms and Insufficient Pressing came "
                  "close")
    elif verdict == "unsuitable":
        reason = ("none of the videos look like the chest-compression videos the model learned "
                  "from")
        check = {"limit": 1.0, "ratio": {str(w): 3.5 for w in views},
                 "unsuitable_views": list(views), "reason": reason, "note": ""}
    else:
        raise ValueError(verdict)
    pred = Prediction(
        [f"view {w}" for w in views], views, "stub", "stub", "bce", "val (stub)", errors,
        looks_correct=verdict == "correct", correct_detected=verdict == "correct",
        scores={c: 2 * p - 1 for c, p in probs.items()},
        thresholds={c: (None if m is None else 2 * m - 1) for c, m in marks.items()},
        verdict=verdict, reason=reason, probabilities=probs, marks=marks, candidates=cands,
        input_check=check)
    return pred.to_dict()


def stub_measures() -> list[dict]:
    """Rate and depth as the real assistant words them (assist.measure.measure_dict): a slow
    rate, fairly sure, and a depth inside the guideline."""
    from assist.measure import measure_dict

    rate_edges = np.arange(50.0, 131.0, 10.0)
    depth_edges = np.arange(1.0, 12.0, 1.0)
    return [measure_dict("rate", "regress_rate", 86.2,
                         np.array([0, 0.01, 0.08, 0.71, 0.15, 0.04, 0.01, 0]), rate_edges,
                         {"1": 85.1, "2": 86.9, "3": 86.0, "4": 86.8}),
            measure_dict("depth", "regress_depth", 5.43,
                         np.array([0, 0, 0, 0.04, 0.81, 0.13, 0.02, 0, 0, 0]), depth_edges,
                         {"1": 5.4, "2": 5.5, "3": 5.4, "4": 5.4})]


def stub_frames(video: Path, n: int = 4) -> list[str]:
    """``n`` frames of ``video`` as the JPEG data URLs the real analyser sends."""
    from assist.server import jpeg_data_urls
    from extract.decoders import open_video

    with open_video(video, "pyav") as r:
        idx = np.linspace(0, r.num_frames - 1, n).round().astype(int)
        frames = r.get(idx)
    return jpeg_data_urls(frames, 96)


@pytest.fixture
def stub_server():
    """make(**serve_overrides) -> (TestClient, StubAnalyser, app); clients are closed after."""
    from fastapi.testclient import TestClient

    opened = []

    def make(**overrides):
        stub = StubAnalyser()
        cfg = ServeConfig(**{"max_upload_mb": 1.0, **overrides})
        app = create_app(cfg, analyser=stub)
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        return client, stub, app

    yield make
    for c in opened:
        c.__exit__(None, None, None)


# --- a tiny real run (session-scoped: built once) --------------------------------------------

def _stage_missing() -> str | None:
    import importlib.util

    for mod in ("synth.cli", "extract.flow_cli", "extract.cli", "train.cli",
                "assist.assistant", "extract.runner"):
        if importlib.util.find_spec(mod) is None:
            return f"the tiny real run needs {mod}, which is not built yet"
    return None


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A cpr_clip_plus run on rgb + flow features of a tiny synthetic dataset.

    synth (2 participants, 2 views, 16 frames at 64x48) -> flow (Farneback) -> extract
    (random tsn_r18 at 32 px, 4 segments) -> train (1 epoch, hash text encoder). Returns paths.
    """
    missing = _stage_missing()
    if missing:
        pytest.skip(missing)
    import torch

    from pipeline.cli import main as cli_main

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("serve_run")
    config = root / "tiny.toml"
    manifest = root / "data" / "tiny" / "manifest.csv"
    config.write_text(f'[common]\ndataset = "tiny"\nmanifest = "{manifest}"\n'
                      f'features_dir = "{root / "features"}"\nruns_dir = "{root / "runs"}"\n'
                      'seed = 0\n')
    steps = [
        ["synth", "participants=2", "held_out=1", "frames=16", "resolution=64x48", "n_double=2",
         "n_triple=1", "n_quad=0", "views=2", "workers=1"],
        ["flow", "method=farneback", "short_side=0", "workers=1"],
        ["extract", "backbone=tsn_r18", "modalities=rgb,flow", "segments=4", "short_side=48",
         "crop_size=32", "checkpoint=none", "workers=0", "device=cpu", "min_frames=4"],
        ["train", "backbone=tsn_r18", "segments=4", "modalities=rgb,flow", "models=cpr_clip_plus",
         "epochs=1", "text_encoder=test_hash", "imagine_per_epoch=16", "batch_size=16",
         "val_every=1", "hidden_dim=16", "device=cpu", f"text_cache_dir={root / 'text_cache'}"],
    ]
    for step in steps:
        rc = cli_main([step[0], "--config", str(config), *step[1:]])
        assert rc == 0, f"cprclip {step[0]} failed (rc={rc})"
    videos = sorted((manifest.parent / "videos").glob("*.mp4"))
    composite = sorted({v.stem.rsplit("_v", 1)[0] for v in videos if "-" in v.stem})
    take = [v for v in videos if v.stem.rsplit("_v", 1)[0] == composite[0]]
    return {"root": root, "config": config, "runs": root / "runs",
            "run": root / "runs" / "cpr_clip_plus", "take": take}
