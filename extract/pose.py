"""The pose estimator of ``cprclip pose``: MediaPipe BlazePose (and Hands) in an isolated venv.

mediapipe 0.10.21 is the last release that ships its pose models inside the wheel
(``modules/pose_landmark/pose_landmark_full.tflite``, ``modules/pose_detection/
pose_detection.tflite``), and it needs protobuf < 5 while the main venv has protobuf 7 for
TensorBoard. So it lives in its own venv, ``.venv-pose`` (``make pose-deps``, pins in
``requirements-pose.txt``), and runs there as a subprocess, :mod:`extract.pose_worker`.
:class:`PoseEstimator` starts that worker, checks the sha256 of every model file it will load
against :data:`MODEL_FILES` before it sends any work, and turns the worker's raw outputs into a
:class:`pipeline.skeleton.Skeleton`, whose ``source`` names the models and their sha256.

The mapping from BlazePose's 33 landmarks to the project's 23 keypoints
(:data:`pipeline.skeleton.KEYPOINTS`) is :func:`to_keypoints`, a pure function:

- COCO-17: each COCO joint is the BlazePose landmark of the same name (:data:`COCO_FROM_BLAZEPOSE`;
  both use the person's own left and right). Score: BlazePose's visibility.
- The three points per hand (index_mcp, pinky_mcp, middle_tip) come from MediaPipe Hands (21
  landmarks; :data:`pipeline.skeleton.HAND_21_INDEX`) when it found a hand whose wrist lies
  near BlazePose's wrist of that side (within :data:`HAND_GATE` of the forearm's length; two
  hands are matched to two wrists by the smaller total distance). Score: BlazePose's wrist
  visibility (the Hands graph keeps only hands whose presence passed ``min_tracking``; its
  handedness score says left or right, not how sure it is that a hand is there).
- Without such a hand, index_mcp and pinky_mcp fall back to BlazePose's own hand landmarks
  ``*_index`` (19, 20) and ``*_pinky`` (17, 18), which BlazePose's topology defines as the
  index and pinky "#1 knuckle" (the MCP joints) but regresses from the whole-body crop, at a
  few pixels per hand; their score is the visibility times :data:`FALLBACK_SCORE`, so a
  consumer can tell them from Hands' points. BlazePose has no middle fingertip: middle_tip is
  then not found (score 0).
"""
from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.skeleton import (COCO17, HAND_21_INDEX, HAND_POINTS, KEYPOINTS, Skeleton,
                               check_keypoints)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("pose_worker.py")
DEFAULT_VENV = ".venv-pose"
MEDIAPIPE_VERSION = "0.10.21"

# BlazePose's 33 landmarks, in its output order.
BLAZEPOSE33 = ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner",
               "right_eye", "right_eye_outer", "left_ear", "right_ear", "mouth_left",
               "mouth_right", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
               "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index",
               "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
               "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
               "right_heel", "left_foot_index", "right_foot_index")

# COCO-17 joint -> BlazePose landmark index. Every COCO joint has a BlazePose landmark of the
# same name and meaning; BlazePose's extra eye corners, mouth, hand and foot points are dropped.
COCO_FROM_BLAZEPOSE: dict[str, int] = {
    "nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8,
    "left_shoulder": 11, "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14,
    "left_wrist": 15, "right_wrist": 16, "left_hip": 23, "right_hip": 24,
    "left_knee": 25, "right_knee": 26, "left_ankle": 27, "right_ankle": 28,
}
# Hand point -> BlazePose landmark per side, used when Hands found no hand at that wrist.
HAND_FALLBACK: dict[str, dict[str, int]] = {
    "left": {"index_mcp": 19, "pinky_mcp": 17},
    "right": {"index_mcp": 20, "pinky_mcp": 18},
}
# BlazePose's hand landmarks are regressed at body scale, a few pixels per hand: keep them, but
# below any point a hand model placed, so the score says which is which.
FALLBACK_SCORE = 0.5
# A Hands hand belongs to a wrist when its own wrist landmark lies within this fraction of the
# forearm (BlazePose elbow -> wrist) from BlazePose's wrist: far enough for the two models'
# disagreement on a small hand, near enough that the other hand or a face is not taken.
HAND_GATE = 0.5
_WRIST = {"left": 15, "right": 16}
_ELBOW = {"left": 13, "right": 14}


@dataclass(frozen=True)
class ModelFile:
    relpath: str  # under mediapipe/modules
    sha256: str
    what: str


# The model files the worker loads, with the sha256 of mediapipe 0.10.21's copies: checked
# before every run, so a different mediapipe build is refused instead of measured.
MODEL_FILES: dict[str, ModelFile] = {
    "pose_landmark_full": ModelFile(
        "pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
        "BlazePose landmark model, full (33 landmarks)"),
    "pose_detection": ModelFile(
        "pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
        "BlazePose person detector"),
    "hand_landmark_full": ModelFile(
        "hand_landmark/hand_landmark_full.tflite",
        "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
        "MediaPipe Hands landmark model, full (21 landmarks)"),
    "palm_detection_full": ModelFile(
        "palm_detection/palm_detection_full.tflite",
        "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
        "MediaPipe Hands palm detector, full"),
}
POSE_MODELS = ("pose_landmark_full", "pose_detection")
HAND_MODELS = ("hand_landmark_full", "palm_detection_full")


class PoseError(RuntimeError):
    """The estimator cannot run at all (no venv, wrong model files, a dead worker); one line."""


class PoseVideoError(RuntimeError):
    """One video the estimator could not process; the run goes on."""


# --------------------------------------------------------------------------------------------
# The mapping: pure numpy, tested without mediapipe.


def _assign_hands(wrists: np.ndarray, gates: np.ndarray, hand_wrists: np.ndarray) -> list[int]:
    """For each of the 2 body wrists, the index of its hand among ``hand_wrists`` or -1.

    wrists (2, 2), gates (2,) max distance per wrist, hand_wrists (H, 2) with H in 0..2.
    Two hands are matched to two wrists by the smaller total distance, then gated.
    """
    n = len(hand_wrists)
    if n == 0:
        return [-1, -1]
    d = np.linalg.norm(wrists[:, None, :] - hand_wrists[None, :, :], axis=-1)  # (2, H)
    if n == 1:
        side = int(np.argmin(d[:, 0]))
        pick = [-1, -1]
        pick[side] = 0
    else:
        straight, crossed = d[0, 0] + d[1, 1], d[0, 1] + d[1, 0]
        pick = [0, 1] if straight <= crossed else [1, 0]
    return [h if h >= 0 and d[s, h] <= gates[s] else -1 for s, h in enumerate(pick)]


def to_keypoints(pose: np.ndarray, found: np.ndarray, hands: np.ndarray | None = None,
                 hand_count: np.ndarray | None = None) -> np.ndarray:
    """BlazePose (and Hands) outputs -> (T, 23, 3) keypoints in :data:`KEYPOINTS` order.

    pose (T, 33, 3): x, y in pixels and visibility; found (T,) bool; hands (T, 2, 21, 3): x, y
    in pixels and a score per hand slot, hand_count (T,) how many slots are filled (None: no
    hand model ran). A frame without a person is all zeros; scores are clipped to [0, 1].
    """
    pose = np.asarray(pose, np.float32)
    T = pose.shape[0]
    if pose.shape[1:] != (33, 3):
        raise ValueError(f"pose has shape {pose.shape}, expected (frames, 33, 3)")
    found = np.asarray(found, bool).reshape(T)
    out = np.zeros((T, len(KEYPOINTS), 3), np.float32)
    vis = np.clip(pose[..., 2], 0.0, 1.0)
    for k, name in enumerate(COCO17):
        j = COCO_FROM_BLAZEPOSE[name]
        out[:, k, :2] = pose[:, j, :2]
        out[:, k, 2] = vis[:, j]
    col = {name: i for i, name in enumerate(KEYPOINTS)}
    for side in ("left", "right"):
        for p, j in HAND_FALLBACK[side].items():
            k = col[f"{side}_{p}"]
            out[:, k, :2] = pose[:, j, :2]
            out[:, k, 2] = vis[:, j] * FALLBACK_SCORE
    if hands is not None and hand_count is not None:
        hands = np.asarray(hands, np.float32)
        sides = ("left", "right")
        wrists = pose[:, [_WRIST[s] for s in sides], :2]  # (T, 2, 2)
        elbows = pose[:, [_ELBOW[s] for s in sides], :2]
        gates = HAND_GATE * np.linalg.norm(wrists - elbows, axis=-1)  # (T, 2)
        for t in np.flatnonzero(found & (np.asarray(hand_count) > 0)):
            n = int(min(hand_count[t], 2))
            pick = _assign_hands(wrists[t], gates[t], hands[t, :n, 0, :2])
            for s, h in enumerate(pick):
                if h < 0:
                    continue
                score = vis[t, _WRIST[sides[s]]]
                for p in HAND_POINTS:
                    k = col[f"{sides[s]}_{p}"]
                    out[t, k, :2] = hands[t, h, HAND_21_INDEX[p], :2]
                    out[t, k, 2] = score
    out[~found] = 0.0
    out[out[..., 2] == 0, :2] = 0.0  # a joint not found has x, y = 0 (the file's convention)
    return out


def hand_source(pose: np.ndarray, found: np.ndarray, hands: np.ndarray | None,
                hand_count: np.ndarray | None) -> np.ndarray:
    """(T, 2) bool: whether each side's hand points came from MediaPipe Hands (else from
    BlazePose's fallback), by the same rule as :func:`to_keypoints`; for measurement."""
    kp = to_keypoints(pose, found, hands, hand_count)
    col = {name: i for i, name in enumerate(KEYPOINTS)}
    return np.stack([kp[:, col[f"{s}_middle_tip"], 2] > 0 for s in ("left", "right")], 1)


# --------------------------------------------------------------------------------------------
# The worker: a subprocess in the pose venv.


def venv_python(venv: str | Path) -> Path:
    """The interpreter of the pose venv; a relative ``venv`` is under the repository."""
    v = Path(venv)
    if not v.is_absolute():
        v = ROOT / v
    return v / "bin" / "python"


def recipe(hands: bool, max_side: int, min_detection: float, min_tracking: float) -> str:
    """What a skeleton file is made with; a change means the videos are estimated again."""
    return (f"mediapipe-{MEDIAPIPE_VERSION} blazepose-full hands={'mediapipe' if hands else 'no'}"
            f" max_side={max_side} det={min_detection:g} track={min_tracking:g}")


def models_used(hands: bool) -> tuple[str, ...]:
    return POSE_MODELS + (HAND_MODELS if hands else ())


def source_string(recipe_: str, hands: bool) -> str:
    """A skeleton file's ``source``: the recipe, then each model file and its sha256. The
    worker runs only after the files were checked against these sums, so the string is known
    before it starts (a killed run's files are recognised by it)."""
    return recipe_ + " " + " ".join(f"{n} sha256={MODEL_FILES[n].sha256}"
                                    for n in models_used(hands))


class PoseEstimator:
    """One worker process in the pose venv; :meth:`estimate` per video. Use as a context
    manager, or call :meth:`close`.

    The worker is started lazily, and again after a video on which it crashed or timed out.
    """

    def __init__(self, venv: str | Path = DEFAULT_VENV, hands: bool = True, max_side: int = 1280,
                 min_detection: float = 0.5, min_tracking: float = 0.5,
                 timeout_s: float = 600.0):
        self.python = venv_python(venv)
        self.hands = hands
        self.max_side = max_side
        self.min_detection = min_detection
        self.min_tracking = min_tracking
        self.timeout_s = timeout_s
        self.recipe = recipe(hands, max_side, min_detection, min_tracking)
        self.source = source_string(self.recipe, hands)
        self._proc: subprocess.Popen | None = None
        self._buf = b""

    # -- the process --

    def _start(self) -> None:
        if not self.python.is_file():
            raise PoseError(f"{self.python} not found: the pose estimator needs its own venv; "
                            "run 'make pose-deps' (mediapipe 0.10.21, isolated from .venv)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["GLOG_minloglevel"] = "2"  # MediaPipe's C++ INFO/WARNING lines
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        # The worker's stderr (MediaPipe's own log lines) goes to a file: its last line is the
        # reason given when the worker dies.
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [str(self.python), "-u", str(WORKER)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=str(ROOT),
            start_new_session=True)
        self._buf = b""
        try:
            hello = self._read(120.0)  # importing mediapipe takes seconds on a busy machine
        except PoseVideoError as e:
            raise PoseError(f"the pose worker in {self.python.parent.parent} cannot start: {e}; "
                            "rerun 'make pose-deps'") from None
        if "hello" not in hello:
            err = hello.get("error", "no greeting")
            self.close()
            raise PoseError(f"the pose worker in {self.python.parent.parent} cannot start: {err}; "
                            "rerun 'make pose-deps'")
        info = hello["hello"]
        if info.get("mediapipe") != MEDIAPIPE_VERSION:
            self.close()
            raise PoseError(f"{self.python.parent.parent} has mediapipe {info.get('mediapipe')}, "
                            f"expected {MEDIAPIPE_VERSION}; rerun 'make pose-deps'")
        try:
            check_models(Path(info["modules"]), self.hands)
        except PoseError:
            self.close()
            raise

    def _read(self, timeout: float) -> dict:
        """The next JSON line from the worker, or PoseVideoError after ``timeout`` seconds."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise PoseVideoError(f"the pose worker gave no answer within {timeout:g} s "
                                     "(timeout_s); it was stopped")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self._proc.wait()
                    last = self._stderr_tail()
                    self.close()
                    raise PoseVideoError(f"the pose worker died (exit code {code})"
                                         + (f": {last}" if last else ""))
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            self.close()
            raise PoseVideoError(f"the pose worker answered {line[:80]!r}, not JSON") from None

    def _stderr_tail(self) -> str:
        f = getattr(self, "_stderr", None)
        if f is None:
            return ""
        f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
        lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1][:200] if lines else ""

    def kill(self) -> None:
        """Stop the worker now (an interrupted run): a thread waiting on it gets EOF at once."""
        p = self._proc
        if p is not None and p.poll() is None:
            p.kill()

    def close(self) -> None:
        p, self._proc = self._proc, None
        if p is None:
            return
        try:
            if p.stdin:
                p.stdin.close()
            p.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- work --

    def start(self) -> None:
        """Start the worker now (and check the models), not at the first video."""
        if self._proc is None:
            self._start()

    def raw(self, video: str | Path, out: str | Path) -> dict:
        """Run the worker on ``video``; its raw outputs go to ``out`` (.npz). Returns its answer
        (``frames``, ``seconds``) or raises PoseVideoError."""
        self.start()
        req = {"video": str(Path(video).resolve()), "out": str(Path(out).resolve()),
               "hands": self.hands, "max_side": self.max_side,
               "min_detection": self.min_detection, "min_tracking": self.min_tracking}
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write((json.dumps(req) + "\n").encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.close()
            raise PoseVideoError("the pose worker died before it took the video") from None
        ans = self._read(self.timeout_s)
        if "error" in ans:
            raise PoseVideoError(str(ans["error"]))
        return ans

    def estimate(self, video: str | Path, tmp: str | Path) -> tuple[Skeleton, dict]:
        """(skeleton, the worker's answer) for ``video``; ``tmp`` holds the raw outputs while
        they are read and is removed."""
        tmp = Path(tmp)
        try:
            ans = self.raw(video, tmp)
            sk = read_raw(tmp, self.source, str(video))
        finally:
            tmp.unlink(missing_ok=True)
        return sk, ans


def check_models(modules: Path, hands: bool) -> dict[str, str]:
    """sha256 of each model file the worker will load, checked against :data:`MODEL_FILES`;
    PoseError (one line naming the file) when one is missing or differs."""
    from pipeline.provenance import sha256_file

    out = {}
    for name in models_used(hands):
        m = MODEL_FILES[name]
        p = modules / m.relpath
        if not p.is_file():
            raise PoseError(f"{p}: {m.what} not found in the installed mediapipe; "
                            "rerun 'make pose-deps'")
        digest = sha256_file(p)
        if digest != m.sha256:
            raise PoseError(f"{p}: sha256 {digest[:12]}… is not mediapipe {MEDIAPIPE_VERSION}'s "
                            f"{m.sha256[:12]}…; rerun 'make pose-deps'")
        out[name] = digest
    return out


def read_raw(path: str | Path, source: str, video: str = "") -> Skeleton:
    """The worker's raw .npz -> a checked Skeleton (keypoints mapped by :func:`to_keypoints`)."""
    where = video or str(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            pose, found = z["pose"], z["found"]
            hands, count = z["hands"], z["hand_count"]
            w, h = (int(v) for v in z["size"])
            fps = float(z["fps"][0])
    except (OSError, ValueError, KeyError) as e:
        raise PoseVideoError(f"{where}: unreadable worker output ({type(e).__name__})") from None
    kp = check_keypoints(to_keypoints(pose, found, hands, count), where)
    if not fps > 0:
        fps = 25.0  # a container without a frame rate: the dataset's rate, as decoders assume
        log.warning("pose: %s: the video states no frame rate; recorded as 25", where)
    return Skeleton(kp, w, h, fps, source)


def detected_fraction(sk: Skeleton) -> float:
    """Fraction of frames with a person (any keypoint with a score)."""
    return float((sk.keypoints[..., 2].max(axis=1) > 0).mean())


__all__ = ["BLAZEPOSE33", "COCO_FROM_BLAZEPOSE", "HAND_FALLBACK", "FALLBACK_SCORE", "HAND_GATE",
           "MODEL_FILES", "PoseEstimator", "PoseError", "PoseVideoError", "to_keypoints",
           "hand_source", "check_models", "read_raw", "recipe", "source_string", "venv_python",
           "detected_fraction"]
