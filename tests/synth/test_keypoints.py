"""The synthetic keypoints: the clean ones lie on the drawn figure, drawing them changes no
frame, the noise model has the statistics it documents, and `cprclip synth` writes both files
for every video (issue 15, part 1)."""
from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.manifest import load_manifest
from pipeline.skeleton import KEYPOINTS, NUM_KEYPOINTS, read_skeleton
from synth.config import SynthConfig
from synth.keypoints import LEFT_RIGHT, NoiseModel, add_noise, body_size, markov_runs
from synth.render import (SCORE_HIDDEN, SCORE_VISIBLE, _clip_setup, clip_keypoints, derive_seed,
                          draw_prims, iter_frames, manikin_prims, render_background, render_clip,
                          rescuer_pose)
from synth.runner import generate

K = {n: i for i, n in enumerate(KEYPOINTS)}


# --- clean keypoints: where the renderer draws ------------------------------------------------

def _figure_mask(labels, view, seed, res, frames):
    """(T, H, W) bool: stored-frame pixels where the rescuer changes the drawing (no lighting or
    pixel noise), drawn the way iter_frames draws."""
    w, h = res
    person, motion, _, ss, cam = _clip_setup(labels, 0, view, seed, res, frames, 25.0, 0)
    bg = render_background(cam, person, w * ss, h * ss)
    still = manikin_prims(person)
    masks = []
    for i in range(frames):
        prims, shadows, _ = rescuer_pose(person, motion, i)
        empty, full = bg.copy(), bg.copy()
        draw_prims(empty, cam, still, [], aa=ss == 1)
        draw_prims(full, cam, still + prims, [], aa=ss == 1)
        diff = np.abs(full.astype(int) - empty).sum(-1).astype(np.uint8)
        small = cv2.resize(diff, (w, h), interpolation=cv2.INTER_AREA)
        masks.append(small > 0)
    return np.stack(masks)


@pytest.mark.parametrize("labels,view", [((0,), 1), ((3,), 2), ((2, 8), 3), ((1, 4, 6), 4)])
def test_visible_clean_keypoints_lie_on_the_drawn_rescuer(labels, view):
    res, frames = (96, 72), 6
    kp = clip_keypoints(labels, 0, view, 5, res, frames)
    mask = _figure_mask(labels, view, 5, res, frames)
    shown = kp[..., 2] == SCORE_VISIBLE
    assert shown.mean() > 0.5  # most joints are in view
    t, k = np.nonzero(shown)

    def on_figure(dx=0.0):
        x = np.clip(np.round(kp[t, k, 0] + dx).astype(int), 0, res[0] - 1)
        y = np.clip(np.round(kp[t, k, 1]).astype(int), 0, res[1] - 1)
        return mask[t, y, x].mean()

    assert on_figure() > 0.97
    assert on_figure(dx=25) < 0.5  # the check can fail: beside the figure is background


def test_keypoints_follow_the_figure_and_flag_what_it_hides():
    kp = clip_keypoints((0,), 0, 1, 5, (160, 120), 10)  # front view, across the manikin
    assert kp.shape == (10, NUM_KEYPOINTS, 3) and kp.dtype == np.float32
    assert set(np.unique(kp[..., 2])) <= {SCORE_VISIBLE, SCORE_HIDDEN}
    # The manikin hides the kneeling rescuer's knees and ankles from the front camera ...
    assert (kp[:, [K["left_knee"], K["right_knee"]], 2] == SCORE_HIDDEN).all()
    # ... and shows the head, shoulders and hands.
    assert (kp[:, [K["nose"], K["left_shoulder"], K["right_shoulder"]], 2] == SCORE_VISIBLE).all()
    # The camera faces the rescuer, so their left side is on the right of the picture.
    assert (kp[:, K["left_shoulder"], 0] > kp[:, K["right_shoulder"], 0]).all()
    # Shoulders above hips, the face (bowed over the hands) between the shoulders; the hands
    # move down and up with the presses.
    assert (kp[:, K["left_shoulder"], 1] < kp[:, K["left_hip"], 1]).all()
    assert ((kp[:, K["right_shoulder"], 0] < kp[:, K["nose"], 0])
            & (kp[:, K["nose"], 0] < kp[:, K["left_shoulder"], 0])).all()
    assert np.ptp(kp[:, K["left_wrist"], 1]) > 0.5


def test_one_hand_fist_and_flat_hand_points():
    # Single hand (3): the free left hand rests on the thigh, far from the pressing right one.
    single = clip_keypoints((3,), 0, 2, 5, (160, 120), 4)
    gap = np.linalg.norm(single[:, K["left_middle_tip"], :2] - single[:, K["right_middle_tip"], :2],
                         axis=-1)
    assert (gap > 8).all()
    # A fist (2) folds the middle fingertip back to the knuckles; a flat hand (1) does not.
    def tip_to_knuckles(labels):
        kp = clip_keypoints(labels, 0, 2, 5, (320, 240), 4)
        mcp = 0.5 * (kp[:, K["right_index_mcp"], :2] + kp[:, K["right_pinky_mcp"], :2])
        return float(np.linalg.norm(kp[:, K["right_middle_tip"], :2] - mcp, axis=-1).mean())
    assert tip_to_knuckles((2,)) < 0.6 * tip_to_knuckles((1,))


def test_drawing_keypoints_changes_no_frame():
    plain = render_clip((4, 6), 1, 3, seed=9, resolution=(64, 48), frames=5)
    kp: list[np.ndarray] = []
    frames = np.stack(list(iter_frames((4, 6), 1, 3, 9, (64, 48), 5, keypoints=kp)))
    np.testing.assert_array_equal(frames, plain)
    np.testing.assert_array_equal(np.stack(kp), clip_keypoints((4, 6), 1, 3, 9, (64, 48), 5))


# --- the noise model ---------------------------------------------------------------------------

def _clean(frames: int, torso: float, hidden: tuple[str, ...] = ()) -> np.ndarray:
    """A still person with the given torso length (px), all joints visible except ``hidden``,
    in a 2000 x 2000 frame."""
    kp = np.zeros((frames, NUM_KEYPOINTS, 3), np.float32)
    rng = np.random.default_rng(1)
    kp[..., 0] = 1000 + rng.uniform(-0.4, 0.4, NUM_KEYPOINTS) * torso
    kp[..., 1] = 1000 + rng.uniform(-0.4, 0.4, NUM_KEYPOINTS) * torso
    for side, x in (("left", 1000 + 0.3 * torso), ("right", 1000 - 0.3 * torso)):
        kp[:, K[f"{side}_shoulder"]] = (x, 1000, 1)
        kp[:, K[f"{side}_hip"]] = (x, 1000 + torso, 1)
    kp[..., 2] = SCORE_VISIBLE
    for n in hidden:
        kp[:, K[n], 2] = SCORE_HIDDEN
    return kp


BODY = [K[n] for n in ("nose", "left_shoulder", "right_hip", "left_knee", "right_ankle")]
HAND = [K[n] for n in ("left_wrist", "right_index_mcp", "left_middle_tip")]
STILL = NoiseModel(miss_rate=0, swap_rate=0)


def test_body_size_is_the_torso_or_the_shoulders():
    assert body_size(_clean(5, 40.0)) == pytest.approx(40.0)
    wide = _clean(5, 10.0)  # seen from above: a short torso between wide shoulders
    wide[:, K["left_shoulder"], 0] = 1020.0
    wide[:, K["right_shoulder"], 0] = 980.0
    assert body_size(wide) == pytest.approx(40.0)


@pytest.mark.parametrize("torso,strength", [(40.0, 1.0), (80.0, 1.0), (40.0, 2.0), (120.0, 0.5)])
def test_jitter_std_scales_with_body_size_and_strength(torso, strength):
    clean = _clean(6000, torso, hidden=("left_knee",))
    noisy = add_noise(clean, 2000, 2000, strength, np.random.default_rng(0), STILL)
    err = (noisy - clean)[..., :2]
    unit = torso * strength
    body = [j for j in BODY if j != K["left_knee"]]
    assert err[:, body].std() / unit == pytest.approx(STILL.jitter, rel=0.1)
    assert err[:, HAND].std() / unit == pytest.approx(STILL.hand_jitter, rel=0.1)
    hidden = err[:, K["left_knee"]].std() / unit
    assert hidden == pytest.approx(STILL.jitter * STILL.occluded_jitter, rel=0.15)
    # errors persist from frame to frame (AR(1))
    e = err[:, body, 0]
    lag1 = np.mean([np.corrcoef(e[1:, j], e[:-1, j])[0, 1] for j in range(len(body))])
    assert lag1 == pytest.approx(STILL.jitter_corr, abs=0.05)


def test_scores_drop_for_hidden_joints():
    clean = _clean(3000, 50.0, hidden=("left_knee", "right_ankle"))
    noisy = add_noise(clean, 2000, 2000, 1.0, np.random.default_rng(0), STILL)
    s = noisy[..., 2]
    assert s[:, K["nose"]].mean() == pytest.approx(STILL.score_visible, abs=0.01)
    assert s[:, K["left_index_mcp"]].mean() == pytest.approx(STILL.score_hand, abs=0.01)
    assert s[:, K["left_knee"]].mean() == pytest.approx(STILL.score_occluded, abs=0.01)
    assert 0 <= s.min() and s.max() <= 1
    half = add_noise(clean, 2000, 2000, 0.5, np.random.default_rng(0), STILL)[..., 2]
    assert half[:, K["left_knee"]].mean() == pytest.approx(
        SCORE_HIDDEN + 0.5 * (STILL.score_occluded - SCORE_HIDDEN), abs=0.01)


@pytest.mark.parametrize("strength", [1.0, 2.0])
def test_missed_frames_and_swaps_occur_at_their_rates(strength):
    model = NoiseModel(jitter=0.0, hand_jitter=0.0)
    clean = _clean(40000, 60.0)
    noisy = add_noise(clean, 2000, 2000, strength, np.random.default_rng(3), model)
    missed = (noisy == 0).all(axis=(1, 2))
    assert missed.mean() == pytest.approx(strength * model.miss_rate, rel=0.15)
    swapped = ~missed & np.isclose(noisy[:, K["left_shoulder"], 0],
                                   clean[:, K["right_shoulder"], 0])
    expected = strength * model.swap_rate * (1 - missed.mean())  # a missed frame shows no swap
    assert swapped.mean() == pytest.approx(expected, rel=0.2)
    # A swapped frame is the mirror labelling of the clean one.
    t = np.flatnonzero(swapped)[0]
    np.testing.assert_allclose(noisy[t, :, :2], clean[t, LEFT_RIGHT, :2])
    # Runs, not single frames: mean run lengths near the model's.
    def mean_run(on):
        starts = np.flatnonzero(on[1:] & ~on[:-1]).size + int(on[0])
        return on.sum() / max(starts, 1)
    assert mean_run(missed) == pytest.approx(model.miss_run, rel=0.15)
    assert mean_run(swapped) == pytest.approx(model.swap_run, rel=0.25)


def test_markov_runs_share():
    on = markov_runs(100000, 0.1, 3.0, np.random.default_rng(0))
    assert on.mean() == pytest.approx(0.1, rel=0.1)
    assert not markov_runs(50, 0.0, 3.0, np.random.default_rng(0)).any()


def test_strength_zero_is_the_clean_copy_and_noise_is_seeded():
    clean = clip_keypoints((0,), 0, 2, 5, (160, 120), 12)
    zero = add_noise(clean, 160, 120, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(zero, clean)
    a = add_noise(clean, 160, 120, 1.0, np.random.default_rng(7))
    b = add_noise(clean, 160, 120, 1.0, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - clean).max() > 0.5


def test_joints_outside_the_frame_are_not_found():
    clean = _clean(50, 40.0)
    clean[:, K["nose"], 0] = -30.0
    noisy = add_noise(clean, 2000, 2000, 1.0, np.random.default_rng(0), STILL)
    assert (noisy[:, K["nose"]] == 0).all()


# --- `cprclip synth` writes them ---------------------------------------------------------------

def _tiny(tmp_path, **kw) -> SynthConfig:
    values = dict(dataset="tiny", manifest=str(tmp_path / "tiny" / "manifest.csv"),
                  participants=2, held_out=1, frames=10, resolution="32x24", n_double=1,
                  n_triple=0, n_quad=0, views=2, workers=1, max_takes=2)
    values.update(kw)
    return SynthConfig(**values)


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_synth_writes_clean_and_noisy_keypoints_for_every_video(tmp_path):
    cfg = _tiny(tmp_path)
    rows = load_manifest(generate(cfg, show_progress=False))
    root = tmp_path / "tiny"
    assert len(rows) == 4
    assert "skeleton" in (root / "manifest.csv").read_text().splitlines()[0].split(",")
    for r in rows:
        assert r.skeleton == (root / "skeleton" / f"{r.video_id}.npz").resolve()
        noisy = read_skeleton(r.skeleton)
        clean = read_skeleton(root / "skeleton_clean" / f"{r.video_id}.npz")
        assert (noisy.source, clean.source) == ("synth-noisy", "synth-clean")
        for sk in (noisy, clean):
            assert sk.keypoints.shape == (10, NUM_KEYPOINTS, 3)
            assert (sk.width, sk.height, sk.fps) == (32, 24, 25.0)
        seed = derive_seed(cfg.seed, "take", r.take_id)
        expected = clip_keypoints(r.labels, int(r.participant[1:]) - 1, r.view, seed, (32, 24),
                                  10, 25.0, cfg.seed)
        np.testing.assert_array_equal(clean.keypoints, expected)
        again = add_noise(expected, 32, 24, 1.0,
                          np.random.default_rng(derive_seed(seed, "keypoints", r.view)))
        np.testing.assert_array_equal(noisy.keypoints, again)


def test_synth_adds_missing_keypoints_without_rerendering_and_follows_the_strength(tmp_path):
    cfg = _tiny(tmp_path)
    manifest = generate(cfg, show_progress=False)
    root = manifest.parent
    videos = {p: (_sha(p), p.stat().st_mtime_ns) for p in (root / "videos").glob("*.mp4")}
    noisy_before = {p.name: read_skeleton(p).keypoints for p in (root / "skeleton").glob("*.npz")}
    # A dataset made before keypoints existed: only the keypoint files are added.
    for d in ("skeleton", "skeleton_clean"):
        for p in (root / d).glob("*.npz"):
            p.unlink()
    generate(cfg, show_progress=False)
    assert {p: (_sha(p), p.stat().st_mtime_ns) for p in videos} == videos
    for name, kp in noisy_before.items():
        np.testing.assert_array_equal(read_skeleton(root / "skeleton" / name).keypoints, kp)
    # Another strength rewrites the noisy files only; 0 makes them the clean ones.
    generate(_tiny(tmp_path, keypoint_noise=0.0), show_progress=False)
    assert {p: (_sha(p), p.stat().st_mtime_ns) for p in videos} == videos
    for p in (root / "skeleton").glob("*.npz"):
        np.testing.assert_array_equal(read_skeleton(p).keypoints,
                                      read_skeleton(root / "skeleton_clean" / p.name).keypoints)
    assert json.loads((root / "synth.json").read_text())["config"]["keypoint_noise"] == 0.0
    # A key that changes the videos is still refused.
    with pytest.raises(ConfigError, match="different config"):
        generate(_tiny(tmp_path, keypoint_noise=0.0, crf=30), show_progress=False)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), 11.0])
def test_keypoint_noise_is_checked(bad):
    with pytest.raises(ConfigError, match="keypoint_noise"):
        SynthConfig(keypoint_noise=bad)
