"""Render one synthetic CPR clip: a rescuer compressing a manikin's chest, seen by one camera.

Pure numpy plus cv2 drawing; no files, no ffmpeg (``synth.runner`` encodes and writes).

The scene is built from 3D primitives (spheres and capsules) of an articulated rescuer (torso,
head, upper arms, forearms, hands, thighs, shins, feet) and a torso-only manikin. Each frame they
are projected through a pinhole camera and drawn far-to-near (painter's algorithm). The floor,
walls and mat come from ray-casting the room once per clip.

World frame (metres): x runs along the manikin (its head at -x), y is up, z points from the
manikin toward the rescuer, who kneels at +z facing -z; the rescuer's right side is +x.

Every error class of the taxonomy changes the pose or the motion (see ``sample_motion``):
hand form (1, 2, 3), bent or tilted arms (4, 5), jumping knees (6), posture (7, 8), hand
location (9, 13), depth (10, 12) and rate (11).
"""
from __future__ import annotations

import colorsys
import functools
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

RGB = tuple[int, int, int]

VIEW_NAMES: dict[int, str] = {1: "front", 2: "left", 3: "right", 4: "oblique"}

# Base camera rigs: eye and look-at target (world metres) and focal length in units of the image
# height. Left/right are the rescuer's sides; "front" looks across the manikin at the rescuer.
CAMERAS: dict[int, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    1: ((-0.10, 1.00, -2.30), (-0.10, 0.45, 0.22), 1.55),
    2: ((-2.45, 0.85, 0.30), (-0.10, 0.45, 0.22), 1.55),
    3: ((2.30, 0.85, 0.30), (-0.10, 0.45, 0.22), 1.55),
    4: ((1.45, 2.35, -1.25), (-0.10, 0.35, 0.18), 1.45),
}

# The manikin: chest top height and the sternum point where correct hands go.
CHEST_TOP = 0.23
STERNUM_X = -0.17

# Depth biases (metres) for the painter's sort: things lying on the manikin's chest must be
# drawn after it from every view, although their centres are about as far from the camera.
BIAS_MANIKIN = 0.12
BIAS_MARKER = 0.06
BIAS_HAND = -0.12


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (``hash()`` is salted per process; this is not)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# --------------------------------------------------------------------------------------------
# Participants: body, clothes and room, fixed per person so that held-out people look new.
# --------------------------------------------------------------------------------------------

SKIN_TONES: tuple[RGB, ...] = ((255, 224, 196), (234, 192, 150), (205, 150, 100),
                               (160, 105, 65), (105, 70, 45))
WALL_PATTERNS = ("plain", "stripes", "wainscot", "panels")
FLOOR_PATTERNS = ("tiles", "planks", "plain", "carpet")


@dataclass(frozen=True)
class Participant:
    """One person and the room they were recorded in."""

    scale: float        # body size relative to a ~1.75 m adult
    girth: float        # thickness of limbs and torso
    skin: RGB
    hair: RGB
    shirt: RGB
    pants: RGB
    shoes: RGB
    long_sleeves: bool
    wall: RGB
    wall2: RGB
    wall_pattern: str
    floor: RGB
    floor2: RGB
    floor_pattern: str
    tile: float         # floor/wall pattern period (m)
    mat: RGB
    manikin: RGB
    room: float         # half size of the square room (m)
    rate_bpm: float     # this person's usual compression rate (within the correct 100-120)
    depth: float        # usual compression depth (m) when correct
    knee_gap: float     # how far from the manikin's side the knees are (m)
    knee_spread: float  # half distance between the knees (m)
    hand_x: float       # habitual hand offset along the sternum (m)
    sway: float         # amplitude of side-to-side body sway (m)


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


def _skin(rng: np.random.Generator) -> RGB:
    pos = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(pos), len(SKIN_TONES) - 2)
    a, b = np.array(SKIN_TONES[i], float), np.array(SKIN_TONES[i + 1], float)
    c = a + (b - a) * (pos - i)
    return tuple(int(v) for v in c)  # type: ignore[return-value]


def sample_participant(index: int, dataset_seed: int = 0) -> Participant:
    """Participant ``index`` (0-based) of the dataset with seed ``dataset_seed``."""
    rng = np.random.default_rng(derive_seed(dataset_seed, "participant", index))
    wall_h = rng.uniform()
    floor_h = rng.uniform()
    return Participant(
        scale=float(rng.uniform(0.9, 1.1)),
        girth=float(rng.uniform(0.85, 1.2)),
        skin=_skin(rng),
        hair=_hsv(rng.uniform(0.02, 0.12), rng.uniform(0.3, 0.8), rng.uniform(0.08, 0.6)),
        shirt=_hsv(rng.uniform(), rng.uniform(0.35, 0.9), rng.uniform(0.35, 0.95)),
        pants=_hsv(rng.uniform(), rng.uniform(0.1, 0.7), rng.uniform(0.15, 0.6)),
        shoes=_hsv(rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.1, 0.9)),
        long_sleeves=bool(rng.uniform() < 0.5),
        wall=_hsv(wall_h, rng.uniform(0.05, 0.4), rng.uniform(0.55, 0.95)),
        wall2=_hsv(wall_h + rng.uniform(-0.2, 0.2), rng.uniform(0.1, 0.5), rng.uniform(0.35, 0.8)),
        wall_pattern=str(rng.choice(WALL_PATTERNS)),
        floor=_hsv(floor_h, rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.8)),
        floor2=_hsv(floor_h + rng.uniform(-0.1, 0.1), rng.uniform(0.1, 0.5), rng.uniform(0.2, 0.7)),
        floor_pattern=str(rng.choice(FLOOR_PATTERNS)),
        tile=float(rng.uniform(0.2, 0.6)),
        mat=_hsv(rng.uniform(), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.7)),
        manikin=_hsv(rng.uniform(0.05, 0.1), rng.uniform(0.15, 0.35), rng.uniform(0.75, 0.95)),
        room=float(rng.uniform(3.0, 4.0)),
        rate_bpm=float(rng.uniform(102, 118)),
        depth=float(rng.uniform(0.05, 0.06)),
        knee_gap=float(rng.uniform(0.0, 0.08)),
        knee_spread=float(rng.uniform(0.11, 0.17)),
        hand_x=float(rng.uniform(-0.015, 0.015)),
        sway=float(rng.uniform(0.0, 0.015)),
    )


# --------------------------------------------------------------------------------------------
# Motion: what one take does over time (shared by its 4 views).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motion:
    """Per-frame compression signals of one take plus its (static) pose choices."""

    labels: tuple[int, ...]
    hand_form: str          # interlock | overlap | clench | single
    posture: str            # kneel | squat | stand
    tilt: float             # arm tilt from vertical (rad)
    tilt_dir: np.ndarray    # (2,) unit vector in the xz-plane toward which the shoulders lean
    bend: float             # elbow flexion at rest (rad); 0 = straight arms
    compress: np.ndarray    # (N,) chest compression (m) per frame
    jump: np.ndarray        # (N,) knee lift (m) per frame
    hand_offset: np.ndarray  # (N, 2) hand offset from the sternum in x and z (m) per frame
    hand_lift: np.ndarray   # (N,) hands lifted off the chest while relocating (m)
    sway: np.ndarray        # (N,) sideways body sway (m)
    rate_bpm: float
    depth: float
    # What a feedback manikin would log for the take (issue 19): the mean peak depth (m) of the
    # presses whose deepest point falls inside the clip (each press varies by +-10 %). The rate
    # is constant within a take, so its mean is ``rate_bpm``.
    mean_depth: float = 0.0


# The error ranges of rate (per minute) and depth (m); correct is 100-120/min and 5-6 cm.
SLOW_RATE = (60.0, 98.0)
SHALLOW_DEPTH = (0.015, 0.047)
DEEP_DEPTH = (0.063, 0.11)


def mean_press_depth(depth: float, amp: np.ndarray, phase0: float, rate: float, frames: int,
                     fps: float) -> float:
    """Mean peak depth (m) of the presses seen in a clip of ``frames`` frames.

    Press k is deepest at phase k + 0.5, i.e. at t = (k + 0.5 - phase0) * 60 / rate; its peak
    is ``depth * amp[k]``. A clip too short to hold a peak gets the nominal ``depth``.
    """
    t_end = (frames - 1) / fps
    k = np.arange(len(amp))
    t_peak = (k + 0.5 - phase0) * 60.0 / rate
    seen = (t_peak >= 0) & (t_peak <= t_end)
    return float(depth * amp[seen].mean()) if seen.any() else float(depth)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def sample_motion(labels: tuple[int, ...], person: Participant, seed: int, frames: int,
                  fps: float) -> Motion:
    """Draw the motion of one take with the given label set (errors are ids 1..13)."""
    rng = np.random.default_rng(derive_seed(seed, "motion"))
    err = set(labels) - {0}
    t = np.arange(frames) / fps

    # Rate and depth take continuous values around the guideline limits (100-120/min, 5-6 cm),
    # so that they can be measured, not only classified (issue 19). One draw each, as before
    # the ranges were widened, so the rest of the motion keeps its random stream.
    # Rate: correct 100-120/min; slow anywhere in 60-98/min (SLOW_RATE).
    if 11 in err:
        rate = float(rng.uniform(*SLOW_RATE))
    else:
        rate = float(np.clip(person.rate_bpm + rng.uniform(-4, 4), 100, 120))
    # Depth: correct 5-6 cm; shallow 1.5-4.7 cm; too deep 6.3-11 cm (the extremes a little
    # exaggerated, so that the difference spans pixels at 160x120).
    if 10 in err:
        depth = float(rng.uniform(*SHALLOW_DEPTH))
    elif 12 in err:
        depth = float(rng.uniform(*DEEP_DEPTH))
    else:
        depth = float(np.clip(person.depth + rng.uniform(-0.004, 0.004), 0.05, 0.06))

    phase0 = rng.uniform(0, 1)
    phase = rate / 60.0 * t + phase0  # in cycles; 0 = released, 0.5 = deepest
    cycle = np.floor(phase).astype(int)
    n_cycles = int(cycle.max()) + 2
    amp = rng.uniform(0.9, 1.1, n_cycles)  # no two presses are exactly alike
    frac = phase - cycle
    wave = (0.5 - 0.5 * np.cos(2 * np.pi * frac)) ** 1.3
    compress = depth * amp[cycle] * wave

    jump = np.zeros(frames)
    if 6 in err:
        jump = float(rng.uniform(0.10, 0.14)) * wave ** 2  # knees leave the floor at each push

    # Hand location.
    offsets = np.zeros((frames, 2))
    lift = np.zeros(frames)
    base = np.array([person.hand_x + rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01)])
    if 9 in err:  # on the belly instead of the lower sternum
        base = np.array([rng.uniform(0.17, 0.23), rng.uniform(-0.04, 0.04)])
    if 13 in err:  # a new spot for every press
        spots = np.zeros((n_cycles + 1, 2))
        for k in range(n_cycles + 1):
            while True:
                o = rng.uniform([-0.11, -0.06], [0.11, 0.06])
                if np.hypot(*o) > 0.05 and (k == 0 or np.hypot(*(o - spots[k - 1])) > 0.06):
                    break
            spots[k] = o
        move = _smoothstep((frac - 0.78) / 0.2)  # relocate while the hands are released
        offsets = spots[cycle] + (spots[cycle + 1] - spots[cycle]) * move[:, None]
        lift = 0.03 * np.sin(np.pi * move)
    offsets = offsets + base

    hand_form = "interlock"
    if 1 in err:
        hand_form = "overlap"
    elif 2 in err:
        hand_form = "clench"
    elif 3 in err:
        hand_form = "single"
    posture = "squat" if 7 in err else "stand" if 8 in err else "kneel"
    if 5 in err:
        tilt = math.radians(rng.uniform(22, 32))
        az = math.radians(rng.uniform(-35, 35))
    else:
        tilt = math.radians(rng.uniform(0, 3))
        az = rng.uniform(-math.pi, math.pi)
    tilt_dir = np.array([math.sin(az), math.cos(az)])  # (x, z); az 0 = shoulders back (+z)
    bend = math.radians(rng.uniform(40, 60)) if 4 in err else 0.0
    sway = person.sway * np.sin(2 * np.pi * (rng.uniform(0.2, 0.4) * t + rng.uniform()))
    return Motion(tuple(sorted(labels)), hand_form, posture, tilt, tilt_dir, bend, compress,
                  jump, offsets, lift, sway, rate, depth,
                  mean_press_depth(depth, amp, phase0, rate, frames, fps))


# --------------------------------------------------------------------------------------------
# Pose: 3D primitives of one frame.
# --------------------------------------------------------------------------------------------


@dataclass
class Prim:
    """A sphere (b is None) or a capsule from a to b, radius r (m), colour, painter bias (m)."""

    a: np.ndarray
    b: np.ndarray | None
    r: float
    color: RGB
    bias: float = 0.0


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else v


def _ik2(a: np.ndarray, c: np.ndarray, l1: float, l2: float, pole: np.ndarray) -> np.ndarray:
    """Middle joint of a two-link chain from ``a`` to ``c`` bending toward ``pole``."""
    d_vec = c - a
    d = float(np.linalg.norm(d_vec))
    u = d_vec / max(d, 1e-9)
    d = min(max(d, abs(l1 - l2) + 1e-6), l1 + l2 - 1e-9)
    along = (l1 * l1 - l2 * l2 + d * d) / (2 * d)
    h = math.sqrt(max(l1 * l1 - along * along, 0.0))
    p = pole - float(pole @ u) * u
    return a + u * along + _unit(p) * h


def _mul(color: RGB, k: float) -> RGB:
    return tuple(int(min(255, max(0, c * k))) for c in color)  # type: ignore[return-value]


def _v(x: float, y: float, z: float) -> np.ndarray:
    return np.array([x, y, z], dtype=float)


def manikin_prims(person: Participant) -> list[Prim]:
    """The manikin lying on its back along x: torso, neck, head, sternum marker."""
    m = person.manikin
    return [
        Prim(_v(-0.33, 0.115, 0.0), _v(0.22, 0.115, 0.0), 0.115, m, BIAS_MANIKIN),
        Prim(_v(-0.31, 0.10, -0.14), _v(-0.31, 0.10, 0.14), 0.085, _mul(m, 0.97), BIAS_MANIKIN),
        Prim(_v(-0.47, 0.09, 0.0), _v(-0.36, 0.10, 0.0), 0.055, _mul(m, 0.95), BIAS_MANIKIN),
        Prim(_v(-0.57, 0.10, 0.0), None, 0.10, _mul(m, 1.03), BIAS_MANIKIN),
    ]


def rescuer_prims(person: Participant, mo: Motion, i: int) -> tuple[list[Prim], list[np.ndarray]]:
    """The rescuer at frame ``i``: primitives and floor points that get a contact shadow."""
    prims, shadows, _ = rescuer_pose(person, mo, i)
    return prims, shadows


@dataclass(frozen=True)
class Figure:
    """Where the drawn rescuer's parts are in one frame (world metres), for its keypoints
    (:func:`figure_joints`). Pairs are (left, right) of the rescuer (left is -x)."""

    head: np.ndarray    # centre of the head sphere
    head_r: float       # its radius
    contact: np.ndarray  # the point the hands press on (the face looks at it)
    shoulders: tuple[np.ndarray, np.ndarray]
    elbows: tuple[np.ndarray, np.ndarray]
    wrists: tuple[np.ndarray, np.ndarray]
    hips: tuple[np.ndarray, np.ndarray]
    knees: tuple[np.ndarray, np.ndarray]
    ankles: tuple[np.ndarray, np.ndarray]
    hands: tuple[Prim, Prim]  # each hand's primitive: a capsule (flat) or a sphere (fist)


def rescuer_pose(person: Participant, mo: Motion,
                 i: int) -> tuple[list[Prim], list[np.ndarray], Figure]:
    """:func:`rescuer_prims` plus the :class:`Figure` those primitives draw."""
    s, g = person.scale, person.girth
    l_up, l_fore = 0.30 * s, 0.27 * s
    l_thigh, l_shin, l_torso = 0.44 * s, 0.43 * s, 0.52 * s
    sw, hw = 0.19 * s, 0.11 * s  # half shoulder and half hip width
    c = float(mo.compress[i])
    jump = float(mo.jump[i])
    off = mo.hand_offset[i]

    # Hands: contact point P on the chest, wrist W above it.
    p = _v(STERNUM_X + off[0], CHEST_TOP - c + float(mo.hand_lift[i]), off[1])
    wrist_h = {"interlock": 0.05, "overlap": 0.04, "clench": 0.16, "single": 0.045}[mo.hand_form]
    w = p + _v(0.0, wrist_h * s, 0.02)
    w_rest = _v(STERNUM_X + off[0], CHEST_TOP, off[1]) + _v(0.0, wrist_h * s, 0.02)

    # Shoulders: above the wrists along the arm direction (tilted by error 5).
    reach = l_up + l_fore
    if mo.bend > 0:
        reach = math.sqrt(l_up ** 2 + l_fore ** 2 + 2 * l_up * l_fore * math.cos(mo.bend))
    lateral = 0.4 * sw if mo.hand_form == "single" else sw
    reach_p = math.sqrt(max(reach ** 2 - lateral ** 2, 1e-4))
    tx, tz = mo.tilt_dir
    arm_dir = _v(math.sin(mo.tilt) * tx, math.cos(mo.tilt), math.sin(mo.tilt) * tz)
    x_shift = -0.6 * sw if mo.hand_form == "single" else 0.0
    body_x = STERNUM_X + person.hand_x + float(mo.sway[i])
    if mo.bend > 0:
        # Bent arms do the pressing: the shoulders barely follow, the elbows flex.
        sc = w_rest + arm_dir * reach_p - _v(0.0, 0.3 * c, 0.0)
    else:
        sc = w + arm_dir * reach_p
    sc = sc + _v(x_shift, 0.0, 0.0)
    sc[0] = 0.5 * sc[0] + 0.5 * (body_x + x_shift)  # the trunk stays near where it kneels
    shoulders = (sc - _v(sw, 0, 0), sc + _v(sw, 0, 0))

    # Legs and hips for the posture.
    shadows: list[np.ndarray] = []
    prims: list[Prim] = []
    zk = 0.25 + person.knee_gap
    kx = person.knee_spread
    feet: list[tuple[np.ndarray, np.ndarray]] = []
    if mo.posture == "kneel":
        knees = [_v(body_x + sx * kx, 0.055 * g + jump, zk) for sx in (-1, 1)]
        ankles = [k + _v(0.0, -0.5 * jump, l_shin) for k in knees]
        feet = [(a, a + _v(0.0, 0.01, 0.11 * s)) for a in ankles]
        hc = _ik2(np.mean(knees, axis=0), sc, l_thigh, l_torso, _v(0, 0.25, 1.0))
    elif mo.posture == "squat":
        ankles = [_v(body_x + sx * kx, 0.07 + jump, zk + 0.18) for sx in (-1, 1)]
        knees = [a + l_shin * _v(0.0, math.cos(0.45), -math.sin(0.45)) for a in ankles]
        feet = [(a + _v(0, -0.03, 0.04), a + _v(0, -0.04, -0.15 * s)) for a in ankles]
        hc = _ik2(np.mean(knees, axis=0), sc, l_thigh, l_torso, _v(0, -0.6, 1.0))
    else:  # stand
        hy = 0.07 + (l_thigh + l_shin) * 0.95 + jump
        dy = min(abs(hy - sc[1]), l_torso * 0.97)
        hz = sc[2] + math.sqrt(l_torso ** 2 - dy ** 2)
        hc = _v(body_x, hy, hz)
        ankles = [_v(body_x + sx * kx, 0.07 + jump, hz + 0.04) for sx in (-1, 1)]
        knees = [_ik2(a, hc + _v(sx * hw, 0, 0), l_shin, l_thigh, _v(0, 0, -1.0))
                 for a, sx in zip(ankles, (-1, 1))]
        feet = [(a + _v(0, -0.03, 0.04), a + _v(0, -0.04, -0.15 * s)) for a in ankles]
    hips = (hc - _v(hw, 0, 0), hc + _v(hw, 0, 0))
    pants, shoes, shirt, skin = person.pants, person.shoes, person.shirt, person.skin
    for k, a, h in zip(knees, ankles, hips):
        prims.append(Prim(h, k, 0.075 * g * s, pants))
        prims.append(Prim(k, a, 0.055 * g * s, _mul(pants, 0.92)))
        shadows.extend([_v(k[0], 0, k[2]), _v(a[0], 0, a[2])])
    for a, toe in feet:
        prims.append(Prim(a, toe, 0.04 * s, shoes))
    prims.append(Prim(hips[0], hips[1], 0.10 * g * s, pants))
    shadows.append(_v(hc[0], 0, hc[2]))

    # Trunk, neck, head.
    up = _unit(sc - hc)
    prims.append(Prim(hc + up * 0.06, sc - up * 0.06, 0.125 * g * s, shirt))
    prims.append(Prim(shoulders[0], shoulders[1], 0.06 * g * s, shirt))
    # The head sits on a short neck and looks down at the hands.
    head = sc + up * 0.14 * s + _v(0.0, 0.0, -0.05 * s)
    prims.append(Prim(sc, head, 0.055 * g * s, _mul(skin, 0.92)))
    prims.append(Prim(head, None, 0.10 * s, skin))
    prims.append(Prim(head + up * 0.03 * s + _v(0, 0.01, 0.04) * s, None, 0.085 * s, person.hair))

    # Arms and hands.
    fore = shirt if person.long_sleeves else skin
    if mo.hand_form == "single":
        wrists = (None, w)
    else:
        wrists = (w - _v(0.02, 0, 0), w + _v(0.02, 0, 0))
    elbows, arm_ends, free_hand = [], [], None
    for sx, sh, wr in zip((-1, 1), shoulders, wrists):
        if wr is None:  # the free arm rests on its thigh
            wr = 0.5 * (knees[0] + hips[0]) + _v(0.0, 0.09 * g * s, 0.0)
            el = _ik2(sh, wr, l_up, l_fore, _v(-0.6, 0, 1.0))
            free_hand = Prim(wr, wr + _v(0.0, -0.01, -0.1 * s), 0.026 * s, skin, BIAS_HAND)
            prims.append(free_hand)
        else:
            el = _ik2(sh, wr, l_up, l_fore, _v(sx * 1.0, 0, 0.5))
        prims.append(Prim(sh, el, 0.048 * g * s, shirt))
        prims.append(Prim(el, wr, 0.04 * g * s, fore))
        elbows.append(el)
        arm_ends.append(wr)
    hand = _hand_prims(mo.hand_form, p, w, s, skin)
    prims.extend(hand)
    if float(np.hypot(*off)) > 0.05:
        # The manikin's dark sternum pad: covered by hands on the sternum, in plain sight when
        # they are elsewhere. (The painter's algorithm cannot hide it, so we decide here.)
        prims.append(Prim(_v(STERNUM_X, CHEST_TOP - 0.02, 0.0), None, 0.03, (150, 40, 40),
                          BIAS_MARKER))
    # _hand_prims lists the left hand first (the lower or darker one); one-handed, the left
    # hand is the free one on the thigh.
    hands = (free_hand, hand[0]) if free_hand is not None else (hand[0], hand[1])
    figure = Figure(head, 0.10 * s, p, shoulders, (elbows[0], elbows[1]),
                    (arm_ends[0], arm_ends[1]), hips, (knees[0], knees[1]),
                    (ankles[0], ankles[1]), hands)
    return prims, shadows, figure


def _hand_prims(form: str, p: np.ndarray, w: np.ndarray, s: float, skin: RGB) -> list[Prim]:
    """Hands on the chest: ``p`` is the contact point, ``w`` the wrist (fingers point -z)."""
    lo, hi = _mul(skin, 0.9), _mul(skin, 1.08)
    if form == "interlock":  # both hands crossed into one compact knot
        return [Prim(w + _v(-0.03, -0.02, 0), w + _v(0.04, -0.03, -0.08 * s), 0.03 * s, lo,
                     BIAS_HAND),
                Prim(w + _v(0.03, -0.01, 0), w + _v(-0.04, -0.02, -0.08 * s), 0.03 * s, hi,
                     BIAS_HAND)]
    if form == "overlap":  # flat hands stacked, fingers straight out, upper one slid forward
        return [Prim(w + _v(0, -0.02, 0), w + _v(-0.02, -0.03, -0.16 * s), 0.022 * s, lo,
                     BIAS_HAND),
                Prim(w + _v(0.0, 0.005, -0.04), w + _v(0.07, -0.005, -0.19 * s), 0.022 * s, hi,
                     BIAS_HAND - 0.01)]
    if form == "clench":  # two fists stacked one on the other
        return [Prim(p + _v(0, 0.045 * s, -0.01), None, 0.05 * s, lo, BIAS_HAND),
                Prim(p + _v(0, 0.125 * s, 0.0), None, 0.052 * s, hi, BIAS_HAND - 0.01)]
    if form == "single":
        return [Prim(w + _v(0, -0.02, 0), w + _v(0.0, -0.03, -0.12 * s), 0.028 * s, skin,
                     BIAS_HAND)]
    raise ValueError(f"unknown hand form {form!r}; valid: interlock, overlap, clench, single")


# --------------------------------------------------------------------------------------------
# Camera, background, drawing.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    eye: np.ndarray     # (3,)
    rot: np.ndarray     # (3, 3) rows: right, down, forward (camera axes in world coords)
    f: float            # focal length (px)
    cx: float
    cy: float

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, 3) world points -> (M, 2) pixel coords and (M,) depth along the view axis."""
        cam = (pts - self.eye) @ self.rot.T
        z = np.maximum(cam[:, 2], 1e-3)
        uv = np.stack([self.cx + self.f * cam[:, 0] / z, self.cy + self.f * cam[:, 1] / z], 1)
        return uv, z


def make_camera(view: int, width: int, height: int, rng: np.random.Generator) -> Camera:
    """Camera ``view`` (1..4) with per-clip jitter of position, aim, zoom and roll."""
    if view not in CAMERAS:
        raise ValueError(f"view {view} unknown; valid views are {sorted(CAMERAS)}")
    eye0, target0, focal = CAMERAS[view]
    eye = np.array(eye0) + rng.uniform(-0.12, 0.12, 3)
    target = np.array(target0) + rng.uniform(-0.05, 0.05, 3)
    fwd = _unit(target - eye)
    right = _unit(np.cross(fwd, [0.0, 1.0, 0.0]))
    down = np.cross(fwd, right)
    roll = math.radians(rng.uniform(-3, 3))
    cr, sr = math.cos(roll), math.sin(roll)
    right, down = cr * right + sr * down, -sr * right + cr * down
    f = focal * height * rng.uniform(0.94, 1.06)
    return Camera(eye, np.stack([right, down, fwd]), f, width / 2.0, height / 2.0)


def _hash_noise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) from integer grid coordinates."""
    x = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return x - np.floor(x)


def render_background(cam: Camera, person: Participant, width: int, height: int) -> np.ndarray:
    """Ray-cast the room (floor with mat and manikin shadow, 4 walls, ceiling): (H, W, 3) uint8."""
    out = np.empty((height, width, 3), np.uint8)
    col = lambda c: np.asarray(c, np.float32)  # noqa: E731
    us = (np.arange(width, dtype=np.float32) + 0.5 - cam.cx) / cam.f
    R = person.room
    tile = person.tile
    for y0 in range(0, height, 256):  # row blocks keep 4K memory small
        vs = (np.arange(y0, min(height, y0 + 256), dtype=np.float32) + 0.5 - cam.cy) / cam.f
        uu, vv = np.meshgrid(us, vs)
        d = uu[..., None] * cam.rot[0] + vv[..., None] * cam.rot[1] + cam.rot[2]
        d = d.astype(np.float32)
        e = cam.eye.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            tf = np.where(d[..., 1] < -1e-6, -e[1] / d[..., 1], np.inf)
            tx = np.where(np.abs(d[..., 0]) > 1e-6,
                          (np.sign(d[..., 0]) * R - e[0]) / d[..., 0], np.inf)
            tz = np.where(np.abs(d[..., 2]) > 1e-6,
                          (np.sign(d[..., 2]) * R - e[2]) / d[..., 2], np.inf)
        tw = np.minimum(tx, tz)
        floor = tf < tw
        t = np.where(floor, tf, tw)
        p = e + d * t[..., None]
        img = np.empty(p.shape, np.float32)
        # Floor.
        fx, fz = p[..., 0], p[..., 2]
        ix, iz = np.floor(fx / tile), np.floor(fz / tile)
        pat = person.floor_pattern
        if pat == "tiles":
            m = ((ix + iz) % 2 == 0)[..., None]
            fl = np.where(m, col(person.floor), col(person.floor2))
            grout = (np.minimum(fx / tile - ix, fz / tile - iz) < 0.04)[..., None]
            fl = np.where(grout, fl * 0.7, fl)
        elif pat == "planks":
            row = np.floor(fz / (tile * 0.5))
            plank = np.floor(fx / (tile * 3) + 0.37 * row)
            k = 0.8 + 0.4 * _hash_noise(row, plank)
            fl = col(person.floor) * k[..., None]
            seam = ((fz / (tile * 0.5) - row) < 0.06)[..., None]
            fl = np.where(seam, fl * 0.6, fl)
        elif pat == "carpet":
            k = 0.85 + 0.3 * _hash_noise(np.floor(fx / 0.03), np.floor(fz / 0.03))
            fl = col(person.floor) * k[..., None]
        else:
            k = 0.92 + 0.08 * np.sin(fx * 1.3 + 0.7) * np.cos(fz * 1.1)
            fl = col(person.floor) * k[..., None]
        mat = ((fx > -0.85) & (fx < 0.55) & (np.abs(fz) < 0.42))[..., None]
        edge = ((fx > -0.88) & (fx < 0.58) & (np.abs(fz) < 0.45))[..., None]
        fl = np.where(edge, col(person.mat) * 0.6, fl)
        fl = np.where(mat, col(person.mat), fl)
        shadow = ((fx + 0.12) / 0.55) ** 2 + (fz / 0.17) ** 2
        fl = fl * (1 - 0.45 * np.clip(1.3 - shadow, 0, 1))[..., None]
        # Walls: horizontal coordinate along the wall, and height.
        along = np.where(np.abs(p[..., 0]) >= R - 1e-3, p[..., 2], p[..., 0])
        hy = p[..., 1]
        wp = person.wall_pattern
        wl = np.broadcast_to(col(person.wall), p.shape).copy()
        if wp == "stripes":
            m = ((np.floor(along / tile) % 2) == 0)[..., None]
            wl = np.where(m, wl, col(person.wall2))
        elif wp == "wainscot":
            wl = np.where((hy < 0.9)[..., None], col(person.wall2), wl)
            wl = np.where((np.abs(hy - 0.9) < 0.03)[..., None], wl * 0.6, wl)
        elif wp == "panels":
            m = (((along / (tile * 2)) % 1.0) < 0.05) | (((hy / (tile * 2)) % 1.0) < 0.05)
            wl = np.where(m[..., None], col(person.wall2), wl)
        wl = np.where((hy < 0.08)[..., None], col(person.wall2) * 0.7, wl)  # skirting board
        wl = np.where((hy > 2.6)[..., None], np.float32(235), wl)  # ceiling-ish
        img = np.where(floor[..., None], fl, wl)
        fog = np.clip(1.05 - 0.035 * np.minimum(t, 20), 0.6, 1.05)
        out[y0:y0 + vs.size] = np.clip(img * fog[..., None], 0, 255).astype(np.uint8)
    return out


_ANGLES = np.linspace(0, 2 * np.pi, 12, endpoint=False)
_SHADOW_RING = 0.09 * np.stack([np.cos(_ANGLES), np.zeros(12), 0.7 * np.sin(_ANGLES)], 1)


def draw_prims(img: np.ndarray, cam: Camera, prims: list[Prim], shadows: list[np.ndarray],
               aa: bool) -> None:
    """Draw shadows then primitives far-to-near onto ``img`` (H, W, 3) uint8, in place."""
    shift = 4
    sc = float(1 << shift)
    line = cv2.LINE_AA if aa else cv2.LINE_8
    # Contact shadows: soft-edged darkening of the floor under knees, feet and hips.
    if shadows:
        ring = (np.stack(shadows)[:, None, :] + _SHADOW_RING[None]).reshape(-1, 3)
        uv, _ = cam.project(ring)
        h, w = img.shape[:2]
        x0, y0 = np.clip(np.floor(uv.min(0)).astype(int) - 1, 0, [w, h])
        x1, y1 = np.clip(np.ceil(uv.max(0)).astype(int) + 2, 0, [w, h])
        if x1 > x0 and y1 > y0:
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            rel = np.round((uv - [x0, y0]) * sc).astype(np.int32).reshape(len(shadows), -1, 2)
            for poly in rel:
                cv2.fillConvexPoly(mask, poly, 1, line, shift)
            region = img[y0:y1, x0:x1]
            np.copyto(region, (region * 0.6).astype(np.uint8), where=mask[..., None] > 0)
    # Project all endpoints in one go, then do the per-primitive arithmetic as arrays.
    a = np.stack([p.a for p in prims])
    b = np.stack([p.b if p.b is not None else p.a for p in prims])
    uva, za = cam.project(a)
    uvb, zb = cam.project(b)
    depth = 0.5 * (za + zb) + np.array([p.bias for p in prims])
    radius = np.array([p.r for p in prims])
    r = 0.5 * cam.f * radius * (1 / za + 1 / zb)  # (M,) px
    outline = np.maximum(1.0, 0.12 * r)
    hl = np.stack([-0.3 * r, -0.35 * r], 1) * sc
    p0 = (uva * sc).astype(np.int64)
    p1 = (uvb * sc).astype(np.int64)
    h0 = (p0 + hl).astype(np.int64).tolist()
    h1 = (p1 + hl).astype(np.int64).tolist()
    thick = np.maximum(1, np.round(2 * r)).astype(np.int64)
    thick_out = (thick + 2 * np.round(outline)).astype(np.int64).tolist()
    thick_hl = np.maximum(1, np.round(0.6 * r)).astype(np.int64).tolist()
    rad = (r * sc).astype(np.int64).tolist()
    rad_out = ((r + outline) * sc).astype(np.int64).tolist()
    rad_hl = (0.45 * r * sc).astype(np.int64).tolist()
    thick = thick.tolist()
    p0, p1 = p0.tolist(), p1.tolist()
    for k in np.argsort(-depth, kind="stable").tolist():
        col = prims[k].color
        dark, light = _shades(col)
        if prims[k].b is None:
            cv2.circle(img, p0[k], rad_out[k], dark, -1, line, shift)
            cv2.circle(img, p0[k], rad[k], col, -1, line, shift)
            cv2.circle(img, h0[k], rad_hl[k], light, -1, line, shift)
        else:
            cv2.line(img, p0[k], p1[k], dark, thick_out[k], line, shift)
            cv2.line(img, p0[k], p1[k], col, thick[k], line, shift)
            cv2.line(img, h0[k], h1[k], light, thick_hl[k], line, shift)


@functools.lru_cache(maxsize=4096)
def _shades(color: RGB) -> tuple[RGB, RGB]:
    """Outline (darker) and highlight (lighter) versions of a colour."""
    light = tuple(int(c + 0.35 * (255 - c)) for c in color)
    return _mul(color, 0.55), light  # type: ignore[return-value]


def _clip_setup(labels: tuple[int, ...], participant_index: int, view: int, seed: int,
                resolution: tuple[int, int], frames: int, fps: float, dataset_seed: int,
                ) -> tuple[Participant, Motion, np.random.Generator, int, Camera]:
    """Person, motion, the view's random stream (after the camera took its draws), the
    supersampling factor and the camera (in supersampled pixels) of one clip."""
    width, height = resolution
    person = sample_participant(participant_index, dataset_seed)
    motion = sample_motion(tuple(labels), person, seed, frames, fps)
    rng = np.random.default_rng(derive_seed(seed, "view", view))
    # Supersample small frames for smooth edges and sub-pixel motion; 4K needs none.
    ss = 2 if width * height <= 640 * 480 else 1
    cam = make_camera(view, width * ss, height * ss, rng)
    return person, motion, rng, ss, cam


def iter_frames(labels: tuple[int, ...], participant_index: int, view: int, seed: int,
                resolution: tuple[int, int] = (160, 120), frames: int = 80, fps: float = 25.0,
                dataset_seed: int = 0,
                keypoints: list[np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """Yield the ``frames`` RGB frames (H, W, 3) uint8 of one clip, one at a time.

    ``seed`` is the take's seed: the motion depends on it only, so the views of one take move
    together; camera jitter, lighting and pixel noise also depend on ``view``.
    ``dataset_seed`` picks the participants' looks (the same person in every take).
    With a ``keypoints`` list, the clip's clean keypoints (K, 3) per frame are appended to it
    after the last frame (:func:`figure_keypoints`); that draws nothing from the random stream,
    so the frames are the same either way.
    """
    width, height = resolution
    person, motion, rng, ss, cam = _clip_setup(labels, participant_index, view, seed, resolution,
                                               frames, fps, dataset_seed)
    bg = render_background(cam, person, width * ss, height * ss)
    still = manikin_prims(person)
    # Lighting: a per-clip gain and tint plus a slow drift during the clip; then pixel noise.
    gain = rng.uniform(0.75, 1.2)
    tint = rng.uniform(0.92, 1.08, 3)
    drift = rng.uniform(-0.12, 0.12)
    drift_phase = rng.uniform(0, 2 * np.pi)
    noise = int(rng.integers(3, 9))
    grain = max(1, width // 640)
    ramp = np.arange(256, dtype=np.float32)
    figs: list[Figure] = []
    scenes: list[list[Prim]] = []
    for i in range(frames):
        img = bg.copy()
        prims, shadows, figure = rescuer_pose(person, motion, i)
        scene = still + prims
        draw_prims(img, cam, scene, shadows, aa=ss == 1)
        if keypoints is not None:
            figs.append(figure)
            scenes.append(scene)
        if ss > 1:
            img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        g = gain * (1 + drift * math.sin(2 * np.pi * i / max(frames, 1) + drift_phase))
        lut = np.clip(ramp[None, :, None] * (g * tint)[None, None, :], 0, 255).astype(np.uint8)
        img = cv2.LUT(img, lut)
        if grain == 1:
            n = rng.integers(0, 2 * noise + 1, size=img.shape, dtype=np.uint8)
        else:  # large frames: coarser grain, like a real sensor after its own denoising
            n = rng.integers(0, 2 * noise + 1, size=(height // grain, width // grain, 3),
                             dtype=np.uint8)
            n = cv2.resize(n, (width, height), interpolation=cv2.INTER_LINEAR)
        img = cv2.subtract(cv2.add(img, n), (noise, noise, noise, 0))
        yield img
    if keypoints is not None:
        keypoints.extend(figure_keypoints(cam, figs, scenes, ss, width, height))


def render_clip(labels: tuple[int, ...], participant_index: int, view: int, seed: int,
                resolution: tuple[int, int] = (160, 120), frames: int = 80, fps: float = 25.0,
                dataset_seed: int = 0) -> np.ndarray:
    """All frames of one clip as (N, H, W, 3) uint8; see ``iter_frames``."""
    return np.stack(list(iter_frames(labels, participant_index, view, seed, resolution, frames,
                                     fps, dataset_seed)))


# --------------------------------------------------------------------------------------------
# Keypoints: the drawn figure's 2D skeleton (pipeline.skeleton's 23 points), exactly as drawn.
# Computed for a whole clip at once: (T, ...) arrays cost far less than T small ones.
# --------------------------------------------------------------------------------------------

# Clean keypoint scores: COCO's visibility flag v / 2. Every position is known exactly; the
# score says whether the drawn frame shows the joint (an estimator's noisy scores start here).
SCORE_VISIBLE = 1.0
SCORE_HIDDEN = 0.5  # behind another part or the manikin, or outside the frame
# A joint belongs to a primitive whose surface it lies within this far (m): its own limb
# covering it in the drawing is no occlusion.
_OWN_PART = 0.01


def _units(v: np.ndarray) -> np.ndarray:
    """Unit vectors along the last axis."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _hand_points(hands: list[Prim], side: int) -> np.ndarray:
    """index_mcp, pinky_mcp, middle_tip of one hand in T frames: (T, 3, 3); ``side`` -1 left,
    +1 right. The hand's shape (capsule or sphere) is the same in every frame of a take.

    A capsule is a flat hand from the wrist end ``a`` to the fingertips ``b``: the knuckles
    halfway along it on its two edges, the middle fingertip at its rounded end. A sphere is a
    fist with the knuckles forward (-z) and the fingertips curled into the palm. Palms face
    down (-y); the thumb (index) side is the inner one, toward the other hand.
    """
    down = np.array([0.0, -1.0, 0.0])
    a = np.array([h.a for h in hands])  # (T, 3)
    r = np.array([h.r for h in hands])[:, None]
    if hands[0].b is None:  # a fist
        d = np.broadcast_to(np.array([0.0, 0.0, -1.0]), a.shape)
        thumb = side * np.cross(d, down)
        return np.stack([a + 0.7 * r * d + 0.5 * r * thumb, a + 0.7 * r * d - 0.5 * r * thumb,
                         a + 0.2 * r * d + 0.6 * r * down], 1)
    b = np.array([h.b for h in hands])
    d = _units(b - a)
    palm = _units(down - (d @ down)[:, None] * d)
    thumb = side * np.cross(d, palm)
    mid = 0.5 * (a + b)
    return np.stack([mid + 0.8 * r * thumb, mid - 0.8 * r * thumb, b + r * d], 1)


def figure_joints(figs: list[Figure]) -> np.ndarray:
    """The 23 keypoints (pipeline.skeleton.KEYPOINTS order) of T figures in world metres:
    (T, K, 3).

    Every body joint is a joint of the drawn figure (shoulders, elbows, wrists, hips, knees,
    ankles). The head is one sphere, so its face points are placed on it: the nose where the
    face looks (at the hands, and forward), the eyes beside and above it, the ears at the
    sides. The hand points come from the hand primitives (:func:`_hand_points`).
    """
    pair = lambda name: np.array([getattr(f, name) for f in figs])  # noqa: E731  (T, 2, 3)
    head = np.array([f.head for f in figs])
    r = np.array([f.head_r for f in figs])[:, None]
    sh = pair("shoulders")
    lat = _units(sh[:, 1] - sh[:, 0])  # the rescuer's right
    face = _units(_units(np.array([f.contact for f in figs]) - head) + np.array([0.0, 0.0, -1.0]))
    face_up = _units(np.cross(lat, face))
    out = [head + r * face]
    out += [head + r * _units(face + 0.45 * sx * lat + 0.35 * face_up) for sx in (-1, 1)]
    out += [head + r * _units(sx * lat - 0.15 * face) for sx in (-1, 1)]
    body = [sh] + [pair(n) for n in ("elbows", "wrists", "hips", "knees", "ankles")]
    out += [p[:, k] for p in body for k in (0, 1)]
    joints = np.stack(out, 1)
    hands = [_hand_points([f.hands[k] for f in figs], side) for k, side in ((0, -1), (1, 1))]
    return np.concatenate([joints] + hands, 1)


def keypoint_visible(cam: Camera, pts: np.ndarray, scenes: list[list[Prim]]) -> np.ndarray:
    """(T, K) bool: whether frame t's drawing shows the world point ``pts[t, k]`` (T, K, 3);
    ``scenes[t]`` is everything drawn in frame t.

    :func:`draw_prims` paints far to near, so a pixel shows the nearest primitive (by its
    painter's depth) whose projected disk or band covers it. A point is shown when that
    primitive is one it lies on (its own limb), or when no primitive covers it.
    """
    T, K = pts.shape[:2]
    M = max(len(s) for s in scenes)
    a = np.zeros((T, M, 3))
    b = np.zeros((T, M, 3))
    radius = np.zeros((T, M))
    bias = np.zeros((T, M))
    real = np.zeros((T, M), bool)  # frames with fewer primitives are padded
    for t, scene in enumerate(scenes):
        n = len(scene)
        a[t, :n] = [p.a for p in scene]
        b[t, :n] = [p.b if p.b is not None else p.a for p in scene]
        radius[t, :n] = [p.r for p in scene]
        bias[t, :n] = [p.bias for p in scene]
        real[t, :n] = True
    uva, za = cam.project(a.reshape(-1, 3))
    uvb, zb = cam.project(b.reshape(-1, 3))
    uva, uvb = uva.reshape(T, M, 2), uvb.reshape(T, M, 2)
    za, zb = za.reshape(T, M), zb.reshape(T, M)
    depth = 0.5 * (za + zb) + bias
    r = 0.5 * cam.f * radius * (1 / za + 1 / zb)
    r = r + np.maximum(1.0, 0.12 * r)  # with the outline, as drawn
    uvp = cam.project(pts.reshape(-1, 3))[0].reshape(T, K, 2)

    # Squared distance from each point to each projected segment, (T, K, M), expanded so that
    # no (T, K, M, 2) temporaries are needed (this runs for every video synth writes).
    seg = uvb - uva
    seg2 = np.maximum((seg ** 2).sum(-1), 1e-12)[:, None]  # (T, 1, M)
    along = (np.einsum("tkc,tmc->tkm", uvp, seg) - (uva * seg).sum(-1)[:, None]) / seg2
    rel2 = ((uvp ** 2).sum(-1)[..., None] - 2 * np.einsum("tkc,tmc->tkm", uvp, uva)
            + (uva ** 2).sum(-1)[:, None])
    tc = np.clip(along, 0, 1)
    dist2 = rel2 - 2 * tc * along * seg2 + tc ** 2 * seg2
    covers = (dist2 <= (r ** 2)[:, None]) & real[:, None]
    top = np.argmin(np.where(covers, depth[:, None], np.inf), axis=2)  # (T, K)
    # Whether each point lies on that topmost primitive, in 3D.
    ta, tb = (np.take_along_axis(x, top[..., None], 1) for x in (a, b))  # (T, K, 3)
    tr = np.take_along_axis(radius, top, 1)
    seg3 = tb - ta
    u = np.clip(((pts - ta) * seg3).sum(-1) / np.maximum((seg3 ** 2).sum(-1), 1e-12), 0, 1)
    own = np.linalg.norm(pts - ta - u[..., None] * seg3, axis=-1) <= tr + _OWN_PART
    return ~covers.any(2) | own


def figure_keypoints(cam: Camera, figs: list[Figure], scenes: list[list[Prim]], ss: int,
                     width: int, height: int) -> np.ndarray:
    """The clean keypoints of T frames: (T, K, 3) float32 x, y (pixels of the stored
    ``width`` x ``height`` frame; integer = pixel centre) and score (:data:`SCORE_VISIBLE` or
    :data:`SCORE_HIDDEN`). ``cam`` draws at ``ss`` times the stored size; ``scenes[t]`` is
    everything drawn in frame t (manikin and rescuer)."""
    pts = figure_joints(figs)
    T, K = pts.shape[:2]
    uv = cam.project(pts.reshape(-1, 3))[0].reshape(T, K, 2)
    # An ss-times larger frame shrunk by INTER_AREA: stored pixel j covers drawn pixels
    # ss*j .. ss*j + ss-1, whose centre is ss*j + (ss-1)/2.
    xy = (uv - 0.5 * (ss - 1)) / ss
    inside = ((xy[..., 0] > -0.5) & (xy[..., 0] < width - 0.5) & (xy[..., 1] > -0.5)
              & (xy[..., 1] < height - 0.5))
    shown = keypoint_visible(cam, pts, scenes) & inside
    score = np.where(shown, SCORE_VISIBLE, SCORE_HIDDEN)
    return np.concatenate([xy, score[..., None]], -1).astype(np.float32)


def clip_keypoints(labels: tuple[int, ...], participant_index: int, view: int, seed: int,
                   resolution: tuple[int, int] = (160, 120), frames: int = 80, fps: float = 25.0,
                   dataset_seed: int = 0) -> np.ndarray:
    """The clean keypoints (T, K, 3) of the clip :func:`iter_frames` draws with the same
    arguments, without drawing it (the same person, motion and camera)."""
    width, height = resolution
    person, motion, _, ss, cam = _clip_setup(labels, participant_index, view, seed, resolution,
                                             frames, fps, dataset_seed)
    still = manikin_prims(person)
    figs, scenes = [], []
    for i in range(frames):
        prims, _, figure = rescuer_pose(person, motion, i)
        figs.append(figure)
        scenes.append(still + prims)
    return figure_keypoints(cam, figs, scenes, ss, width, height)
