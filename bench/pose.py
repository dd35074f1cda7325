"""The pose estimator on the demo's drawn rescuer: detection rate, PCK and speed per view.

    .venv/bin/python bench/pose.py [--takes 8] [--data /tmp/pose_bench] [--no-hands-videos 8]

1. ``cprclip synth`` with the demo's config (configs/synthetic.toml: seed 0, 160x120, 80
   frames) and ``max_takes=--takes`` into ``--data``: the same takes, people and cameras as the
   demo's first takes, each with its 4 views, and the clean ground-truth keypoints that synth
   writes beside them (``skeleton_clean/<video_id>.npz``).
2. MediaPipe BlazePose + Hands in ``.venv-pose`` (``extract.pose.PoseEstimator``, the code of
   ``cprclip pose``) on every video; then BlazePose alone on ``--no-hands-videos`` of them, for
   the speed without the hand model.
3. Per view: the detection rate (frames where a person is reported), and on those frames the
   PCK at 0.1 of the torso size: a keypoint is correct when it lies within 0.1 x the ground
   truth's shoulder-midpoint-to-hip-midpoint distance (in that frame) of the truth. Every joint
   the truth has (score > 0) counts; a joint the estimator does not report counts as wrong. Per
   joint group too, hands split by where their points came from (MediaPipe Hands, or
   BlazePose's fallback; middle_tip only from Hands). "PCK, L/R free" takes, per frame, the
   better of the prediction and its left/right mirror (side views confuse the two sides).

Prints Markdown tables (paste them into docs/pose.md) and writes them, with the raw numbers,
to ``--out`` (JSON). The speed is frames per second of the worker's own loop (decode + models),
wall clock, one worker; the machine's other load during the run is reported beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extract.pose import PoseEstimator, hand_source, to_keypoints  # noqa: E402
from pipeline.skeleton import KEYPOINTS  # noqa: E402

VIEWS = {1: "front", 2: "left", 3: "right", 4: "high oblique"}
COL = {n: i for i, n in enumerate(KEYPOINTS)}
GROUPS = {
    "head": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    "shoulders": ("left_shoulder", "right_shoulder"),
    "elbows": ("left_elbow", "right_elbow"),
    "wrists": ("left_wrist", "right_wrist"),
    "hips": ("left_hip", "right_hip"),
    "knees": ("left_knee", "right_knee"),
    "ankles": ("left_ankle", "right_ankle"),
}
HAND = ("index_mcp", "pinky_mcp", "middle_tip")
# index of each keypoint's mirror (left <-> right)
MIRROR = np.array([COL[n.replace("left_", "RIGHT_").replace("right_", "left_")
                       .replace("RIGHT_", "right_")] for n in KEYPOINTS])


def busy_cpu_s() -> float:
    """Busy CPU seconds of the whole machine since boot (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def synth(data: Path, takes: int) -> Path:
    manifest = data / "synthetic" / "manifest.csv"
    if not manifest.is_file():
        subprocess.run([sys.executable, "-m", "pipeline", "synth", "--config",
                        str(ROOT / "configs" / "synthetic.toml"), "dataset=synthetic",
                        f"manifest={manifest}", f"max_takes={takes}"], check=True, cwd=ROOT)
    return manifest


def truths(takes: int) -> dict[str, np.ndarray]:
    """{video_id: clean keypoints (T, 23, 3)} of the sample, from the synth code that drew it
    (synth.render.clip_keypoints: exact positions; score 1 where the drawing shows the joint,
    0.5 where it is hidden)."""
    from pipeline.config import load_stage_config
    from synth.config import SynthConfig
    from synth.plan import plan_takes, select_takes, video_id
    from synth.render import clip_keypoints

    cfg = load_stage_config(SynthConfig, "synth", ROOT / "configs" / "synthetic.toml",
                            [f"max_takes={takes}"])
    out = {}
    for t in select_takes(plan_takes(cfg), cfg.max_takes):
        for view in range(1, cfg.views + 1):
            out[video_id(t, view)] = clip_keypoints(t.labels, t.participant, view, t.seed,
                                                    cfg.size, cfg.frames, cfg.fps, cfg.seed)
    return out


def torso_size(gt: np.ndarray) -> np.ndarray:
    """(T,) |mid(shoulders) - mid(hips)| of the truth, in pixels."""
    c = lambda names: gt[:, [COL[n] for n in names], :2].mean(axis=1)  # noqa: E731
    return np.linalg.norm(c(("left_shoulder", "right_shoulder")) - c(("left_hip", "right_hip")),
                          axis=-1)


def pck(pred: np.ndarray, gt: np.ndarray, thr: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(correct (T, K) bool, counted (T, K) bool) on frames where the estimator found a person.

    pred, gt (T, K, 3). A joint the truth has (score > 0) is counted; it is correct when the
    estimator reports it (score > 0) within ``thr`` x the truth's torso size of that frame."""
    torso = torso_size(gt)
    found = pred[..., 2].max(axis=1) > 0
    counted = (gt[..., 2] > 0) & found[:, None] & (torso[:, None] > 0)
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    correct = counted & (pred[..., 2] > 0) & (dist <= thr * torso[:, None])
    return correct, counted


def pck_lr_free(pred: np.ndarray, gt: np.ndarray, thr: float = 0.1) -> np.ndarray:
    """PCK's correct (T, K) where each frame may take the left/right mirror of the prediction."""
    a, _ = pck(pred, gt, thr)
    b, _ = pck(pred[:, MIRROR], gt, thr)
    use_b = b.sum(axis=1) > a.sum(axis=1)
    return np.where(use_b[:, None], b, a)


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/<pid>/stat)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def estimate(args, recs, raw_dir: Path) -> dict:
    """Run the estimator (BlazePose + Hands) on every video into ``raw_dir``; then BlazePose
    alone on a few, for its speed. Returns the speed figures: frames per wall second of the
    worker's loop, and the worker's CPU seconds per frame (start-up excluded), which another
    process's load changes less."""
    speed = {}
    cpu0, t0 = busy_cpu_s(), time.time()
    for key, hands, todo in (("hands", True, recs), ("no_hands", False,
                                                      recs[: args.no_hands_videos])):
        frames, wall = 0, 0.0
        with PoseEstimator(args.venv, hands=hands, max_side=0) as est:
            est.start()
            c0 = proc_cpu_s(est._proc.pid)
            for r in todo:
                out = raw_dir / (f"{r.video_id}.npz" if hands else "nohands.npz")
                ans = est.raw(r.path, out)
                frames += ans["frames"]
                wall += ans["seconds"]
                print(f"{key} {r.video_id}: {ans['frames'] / ans['seconds']:.1f} frames/s",
                      file=sys.stderr)
            cpu = proc_cpu_s(est._proc.pid) - c0
        speed[key] = {"frames": frames, "fps": frames / wall, "cpu_ms_per_frame":
                      1000 * cpu / frames}
    (raw_dir / "nohands.npz").unlink(missing_ok=True)
    speed["busy_cores"] = (busy_cpu_s() - cpu0) / max(time.time() - t0, 1e-9)
    return speed


def score(recs, truth: dict, raw_dir: Path) -> dict:
    """Per view: detection, PCK (at 0.1 and 0.2, all joints, shown joints, L/R free), per
    joint group, and the hands' source."""
    per_view: dict[int, dict] = {v: {k: [] for k in ("found", "vis", "c", "c2", "n", "c_lr",
                                                      "hand_src", "shown", "torso", "err")}
                                 for v in VIEWS}
    for r in recs:
        gt = truth[r.video_id]
        with np.load(raw_dir / f"{r.video_id}.npz") as z:
            pose, found, hands, count = z["pose"], z["found"], z["hands"], z["hand_count"]
        kp = to_keypoints(pose, found, hands, count)
        if kp.shape[0] != gt.shape[0]:
            raise SystemExit(f"{r.video_id}: {kp.shape[0]} frames estimated, truth has "
                             f"{gt.shape[0]}")
        s = per_view[r.view]
        s["found"].append(found)
        s["vis"].append(kp[found][:, :17, 2].reshape(-1))
        c, n = pck(kp, gt)
        s["c"].append(c)
        s["c2"].append(pck(kp, gt, 0.2)[0])
        s["n"].append(n)
        s["c_lr"].append(pck_lr_free(kp, gt))
        s["shown"].append(gt[..., 2] >= 1.0)
        s["hand_src"].append(hand_source(pose, found, hands, count))
        s["torso"].append(torso_size(gt)[found])
        dist = np.linalg.norm(kp[..., :2] - gt[..., :2], axis=-1)
        s["err"].append(dist[:, :17][n[:, :17] & (kp[:, :17, 2] > 0)])  # reported joints
    return per_view


def _pct(c: np.ndarray, n: np.ndarray) -> str:
    return f"{100 * c.sum() / n.sum():.1f}" if n.sum() else "–"


def summarise(per_view, speed, cpu, takes) -> dict:
    cat = lambda s, k: np.concatenate(s[k]) if s[k] else np.zeros(0)  # noqa: E731
    lines = [f"Sample: the demo's first {takes} takes (seed 0, 160x120, 80 frames; "
             f"`select_takes` order), each seen by the 4 cameras.", ""]
    lines += ["| view | videos | frames | detected frames | videos with a detection | "
              "mean visibility, COCO-17 | torso (px) | PCK@0.1 | PCK@0.1, shown joints | "
              "PCK@0.1, L/R free | PCK@0.2 | median error, COCO-17 (px) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    table = {}
    for v, s in per_view.items():
        found, c, c2, n, clr, shown = (cat(s, k) for k in ("found", "c", "c2", "n", "c_lr",
                                                             "shown"))
        det = float(found.mean())
        anyv = sum(bool(f.any()) for f in s["found"])
        vis = float(cat(s, "vis").mean()) if cat(s, "vis").size else 0.0
        torso = float(np.median(cat(s, "torso"))) if cat(s, "torso").size else 0.0
        err = float(np.median(cat(s, "err"))) if cat(s, "err").size else float("nan")
        lines.append(f"| {v} {VIEWS[v]} | {len(s['found'])} | {found.size} | {100 * det:.1f} % | "
                     f"{anyv}/{len(s['found'])} | {vis:.2f} | {torso:.0f} | {_pct(c, n)} | "
                     f"{_pct(c & shown, n & shown)} | {_pct(clr, n)} | {_pct(c2, n)} | "
                     f"{err:.1f} |")
        table[v] = {"detected": det, "videos_any": anyv, "videos": len(s["found"]),
                    "visibility": vis, "torso_px": torso, "median_error_px": err,
                    "pck": float(c.sum() / max(n.sum(), 1)),
                    "pck_shown": float((c & shown).sum() / max((n & shown).sum(), 1)),
                    "pck_lr_free": float(clr.sum() / max(n.sum(), 1)),
                    "pck_0.2": float(c2.sum() / max(n.sum(), 1))}
    lines += ["", "PCK@0.1 of the torso per joint group, on detected frames (%):", ""]
    lines += ["| joints | " + " | ".join(f"{v} {VIEWS[v]}" for v in VIEWS) + " |",
              "|---|" + "---|" * len(VIEWS)]
    for g, names in GROUPS.items():
        idx = [COL[n] for n in names]
        cells = [_pct(cat(s, "c")[:, idx], cat(s, "n")[:, idx]) for s in per_view.values()]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    for from_hands in (True, False):
        for p in HAND:
            if p == "middle_tip" and not from_hands:
                continue  # BlazePose has none: never reported
            cells = []
            for s in per_view.values():
                c, n, src = cat(s, "c"), cat(s, "n"), cat(s, "hand_src")
                cs, ns = [], []
                for i, side in enumerate(("left", "right")):
                    k, m = COL[f"{side}_{p}"], src[:, i] == from_hands
                    cs.append(c[m, k])
                    ns.append(n[m, k])
                cells.append(_pct(np.concatenate(cs), np.concatenate(ns)))
            how = "from Hands" if from_hands else "BlazePose fallback"
            lines.append(f"| {p} ({how}) | " + " | ".join(cells) + " |")
    share = []
    for s in per_view.values():
        src, found = cat(s, "hand_src"), cat(s, "found")
        share.append(f"{100 * src[found].mean():.0f} %" if found.any() else "–")
    lines += ["", "Share of (detected frame, hand) pairs whose points came from MediaPipe "
              "Hands: " + ", ".join(f"view {v} {x}" for v, x in zip(VIEWS, share)) + "."]
    if speed:
        h, b = speed["hands"], speed["no_hands"]
        lines += ["", f"Speed on {cpu}, one worker (its loop: decoding, colour conversion, "
                  "models; start-up excluded):", "",
                  "| models | frames | frames/s (wall) | worker CPU ms per frame |",
                  "|---|---|---|---|",
                  f"| BlazePose full + Hands full | {h['frames']} | {h['fps']:.1f} | "
                  f"{h['cpu_ms_per_frame']:.0f} |",
                  f"| BlazePose full alone (`hands = false`) | {b['frames']} | {b['fps']:.1f} | "
                  f"{b['cpu_ms_per_frame']:.0f} |", "",
                  f"The machine was {speed['busy_cores']:.2f} cores busy on average while it "
                  "ran (this worker and everything else)."]
    text = "\n".join(lines)
    print(text)
    return {"views": table, "speed": speed, "cpu": cpu, "markdown": text}


def run(args) -> dict:
    from pipeline.manifest import load_manifest
    from pipeline.runtime import cpu_model

    manifest = synth(args.data, args.takes)
    recs = load_manifest(manifest)
    truth = truths(args.takes)
    raw_dir = args.data / "raw"
    raw_dir.mkdir(exist_ok=True)
    done = all((raw_dir / f"{r.video_id}.npz").is_file() for r in recs)
    speed = None if (args.reuse and done) else estimate(args, recs, raw_dir)
    return summarise(score(recs, truth, raw_dir), speed, cpu_model(), args.takes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--takes", type=int, default=8)
    ap.add_argument("--data", type=Path, default=Path("/tmp/pose_bench"))
    ap.add_argument("--venv", default=".venv-pose")
    ap.add_argument("--no-hands-videos", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    ap.add_argument("--reuse", action="store_true",
                    help="score the raw outputs of an earlier run again (no estimation, no speed)")
    args = ap.parse_args()
    res = run(args)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
