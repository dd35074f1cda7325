"""The MediaPipe side of ``cprclip pose``: runs in the isolated ``.venv-pose``, never in ``.venv``.

mediapipe 0.10.21, the last release that ships its pose models inside the wheel, needs
protobuf < 5, while the main venv has protobuf 7 (TensorBoard). So the estimator runs in its own
venv (``make pose-deps``), in this process, started by :mod:`extract.pose`. This file imports
only the standard library, numpy, cv2 and mediapipe: nothing of the project, which is not
installed in that venv. It is run as a script (``.venv-pose/bin/python extract/pose_worker.py``).

Protocol: one JSON object per line. On start the worker sends
``{"hello": {"mediapipe": VERSION, "modules": FOLDER}}``; the parent checks the sha256 of the
model files under FOLDER before sending any work. Then, per request
``{"video": PATH, "out": NPZ, "hands": bool, "max_side": int, "min_detection": float,
"min_tracking": float}`` it decodes the video with OpenCV, runs BlazePose (full) in tracking
mode, and MediaPipe Hands when ``hands`` is set, writes the raw outputs to ``NPZ`` and answers
``{"ok": true, "frames": T, "seconds": S}`` or ``{"error": "one line"}``. EOF on stdin ends it.

The raw outputs (pixels of the original frame, integer = pixel centre as in the skeleton file;
the parent maps them to the project's keypoints):

- ``pose``: float32 (T, 33, 3): x, y, visibility of BlazePose's 33 landmarks; zeros where
  ``found`` is false;
- ``found``: bool (T,): a person was found in the frame;
- ``hands``: float32 (T, 2, 21, 3): x, y and the handedness score of up to two hands;
- ``hand_count``: int8 (T,): how many of the two hand slots hold a hand;
- ``size``: int32 (2,) width, height; ``fps``: float32 (1,).

MediaPipe's C++ logging writes to the process's stdout and stderr file descriptors; the
protocol uses a private copy of stdout, and fd 1 is pointed at stderr, so nothing the library
prints can corrupt an answer.
"""
from __future__ import annotations

import json
import os
import sys
import time


def _protocol_stream():
    """A private copy of stdout for answers; fd 1 then goes to stderr for the libraries."""
    fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the ``cprclip pose`` that started it dies (even by
    SIGKILL), so no orphan keeps a core busy; elsewhere it ends at EOF after its video."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))
        except OSError:
            pass


def _send(out, obj) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def estimate(req: dict) -> dict:
    """Run the models on one video and write the raw outputs to ``req["out"]``."""
    import cv2
    import numpy as np
    from mediapipe.python.solutions import hands as mp_hands
    from mediapipe.python.solutions import pose as mp_pose

    cap = cv2.VideoCapture(req["video"])
    if not cap.isOpened():
        return {"error": f"OpenCV cannot open the video {req['video']}"}
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    pose_rows, found, hand_rows, hand_count = [], [], [], []
    t0 = time.perf_counter()
    # model_complexity=1 is pose_landmark_full (the model the parent checked); tracking mode
    # (static_image_mode=False) runs the detector only when the track is lost, as on video.
    pose = mp_pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                        enable_segmentation=False,
                        min_detection_confidence=req["min_detection"],
                        min_tracking_confidence=req["min_tracking"])
    hands = (mp_hands.Hands(static_image_mode=False, max_num_hands=2, model_complexity=1,
                            min_detection_confidence=req["min_detection"],
                            min_tracking_confidence=req["min_tracking"])
             if req["hands"] else None)
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            h, w = bgr.shape[:2]
            width, height = w, h  # the decoded size wins over the container's claim
            scale = min(1.0, req["max_side"] / max(h, w)) if req["max_side"] > 0 else 1.0
            if scale < 1.0:  # a 4K frame costs far more to convert than the model needs
                bgr = cv2.resize(bgr, (round(w * scale), round(h * scale)),
                                 interpolation=cv2.INTER_AREA)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            rgb.flags.writeable = False
            # MediaPipe's coordinates are fractions of the frame (0 = its left edge), the same
            # for the resized frame; pixels of the original frame with integer = pixel centre
            # (the skeleton file's convention) are x * w - 0.5.
            res = pose.process(rgb)
            row = np.zeros((33, 3), np.float32)
            if res.pose_landmarks is not None:
                for j, lm in enumerate(res.pose_landmarks.landmark):
                    row[j] = (lm.x * w - 0.5, lm.y * h - 0.5, lm.visibility)
            pose_rows.append(row)
            found.append(res.pose_landmarks is not None)
            hrow = np.zeros((2, 21, 3), np.float32)
            n = 0
            if hands is not None:
                hres = hands.process(rgb)
                for lms, hd in zip(hres.multi_hand_landmarks or [], hres.multi_handedness or []):
                    if n == 2:
                        break
                    score = hd.classification[0].score if hd.classification else 0.0
                    for j, lm in enumerate(lms.landmark):
                        hrow[n, j] = (lm.x * w - 0.5, lm.y * h - 0.5, score)
                    n += 1
            hand_rows.append(hrow)
            hand_count.append(n)
    finally:
        pose.close()
        if hands is not None:
            hands.close()
        cap.release()
    seconds = time.perf_counter() - t0
    if not pose_rows:
        return {"error": f"no frame could be decoded from {req['video']}"}
    tmp = req["out"]
    with open(tmp, "wb") as f:
        np.savez(f, pose=np.stack(pose_rows), found=np.array(found, bool),
                 hands=np.stack(hand_rows), hand_count=np.array(hand_count, np.int8),
                 size=np.array([width, height], np.int32), fps=np.array([fps], np.float32))
    return {"ok": True, "frames": len(pose_rows), "seconds": seconds}


def main() -> int:
    _die_with_parent()
    out = _protocol_stream()
    try:
        import mediapipe

        modules = os.path.join(os.path.dirname(mediapipe.__file__), "modules")
        _send(out, {"hello": {"mediapipe": mediapipe.__version__, "modules": modules,
                              "python": sys.version.split()[0]}})
    except Exception as e:  # noqa: BLE001 - the parent names the venv and the fix
        _send(out, {"error": f"cannot import mediapipe: {_one_line(e)}"})
        return 1
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            _send(out, estimate(req))
        except Exception as e:  # noqa: BLE001 - one video's failure, the worker goes on
            _send(out, {"error": _one_line(e)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
