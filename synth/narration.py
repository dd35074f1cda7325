"""Narrations of the synthetic takes: what an instructor says, what a keystep list and a session
report would say, written from what the rescuer does (issue 20, part 2; docs/narration.md).

Three levels of text, as in narrated lecture videos (SurgVLP / HecVL):

- **commentary** (clip level): 2-3 timed lines per take, an instructor's running remarks on
  rate, depth, hands, arms, posture and hand placement, as a speech recogniser would transcribe
  them: paraphrases, remarks left out, lines that start late or early, and word errors
  (substitutions, deletions, insertions) at ``wer``;
- **keystep** (take level): one clean line naming what the take shows;
- **abstract** (session level): a session is one participant's practice (all their takes); one
  short paragraph on their typical rate and depth and what was corrected.

Everything follows from the take's *motion* (``synth.render.sample_motion``: rate, depth, hand
form, posture, arm bend and tilt, knee lift, hand placement), never from the class names or the
class prompts of ``train.prompts``: the vocabulary below was written for the narrations, with
its own paraphrases, so zero-shot recognition from class prompts is a real transfer. Seeded by
(dataset seed, take_id): the processing order changes nothing.

Layout (``<dataset>/narration/``, beside the manifest)::

    narration/<take_id>.json        one take (the manifest's ``narration`` column names it)
    narration/sessions/<session>.json

A take file: ``{"schema": "cprclip-narration-1", "take_id", "session", "duration" (s),
"lines": [{"start", "end", "text"}, ...] (seconds from the take's first frame, sorted),
"keystep", "session_file" (relative to the take file)}``. A session file: ``{"schema",
"session", "abstract", "takes": [take_id, ...]}``. :func:`read_take` checks both and names the
file and the field of anything wrong.

``cprclip narrate`` writes them for an existing synthetic dataset without rendering anything
and without touching its manifest (the loader finds ``narration/<take_id>.json`` for rows whose
``narration`` column is empty); ``cprclip synth`` writes them for every new dataset.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import write_atomic
from pipeline.paths import safe_child

log = logging.getLogger(__name__)

SCHEMA = "cprclip-narration-1"
NARRATION_DIR = "narration"
SESSIONS_DIR = "sessions"

__all__ = ["SCHEMA", "NARRATION_DIR", "Line", "TakeNarration", "TakeFacts", "facts_of_motion",
           "commentary", "keystep", "abstract", "asr_noise", "narrate_takes", "write_narrations",
           "read_take", "NarrationError", "add_arguments", "main"]


class NarrationError(ValueError):
    """A narration file that cannot be used; the message names the file and the field."""


# --------------------------------------------------------------------------------------------
# What the rescuer does: facts read off the motion, as an instructor would perceive them.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TakeFacts:
    """Observable facts of one take. ``issues`` are the aspects an instructor would correct,
    each one of :data:`ISSUE_LINES`' keys; the rest is what they might praise."""

    rate: float  # compressions per minute
    depth_cm: float  # mean press depth
    hands: str  # interlock | overlap | clench | single
    posture: str  # kneel | squat | stand
    bent_arms: bool
    tilted_arms: bool
    jumping: bool
    off_centre: bool  # hands on the belly, not the lower sternum
    wandering: bool  # a new spot for every press
    issues: tuple[str, ...]


def facts_of_motion(m: Any) -> TakeFacts:
    """The facts of a ``synth.render.Motion``. Thresholds are the guideline limits (100-120 per
    minute, 5-6 cm) and what shows: knees lifting 5 cm, elbows bent over ~17 degrees."""
    depth_cm = 100.0 * float(m.mean_depth or m.depth)
    offsets = np.asarray(m.hand_offset, dtype=np.float64)
    bent = float(m.bend) > 0.3
    tilted = float(m.tilt) > 0.25
    jumping = float(np.max(m.jump)) > 0.05 if len(m.jump) else False
    off_centre = float(np.hypot(*offsets.mean(axis=0))) > 0.1
    wandering = float(offsets.std(axis=0).max()) > 0.02
    issues = []
    if m.rate_bpm < 99.0:
        issues.append("slow")
    if depth_cm < 4.9:
        issues.append("shallow")
    elif depth_cm > 6.2:
        issues.append("deep")
    issues += [name for name, seen in ((m.hand_form, m.hand_form != "interlock"), ("bent", bent),
                                       ("tilted", tilted), ("jumping", jumping),
                                       (m.posture, m.posture != "kneel"),
                                       ("off_centre", off_centre), ("wandering", wandering)) if seen]
    return TakeFacts(float(m.rate_bpm), depth_cm, m.hand_form, m.posture, bent, tilted, jumping,
                     off_centre, wandering, tuple(issues))


# --------------------------------------------------------------------------------------------
# The instructor's vocabulary. Written for the narrations: none of these is a class prompt of
# train/prompts.py, a class name of two words or more, or an advice text of pipeline/taxonomy.py
# (tests/narration/test_narration_synth.py checks it).
# --------------------------------------------------------------------------------------------

# issue -> remarks; {rate} and {depth} are filled in (rounded as a person would say them). An
# instructor names a fault with the words of the trade ("too shallow", "you're squatting"), then
# says what to do in their own words.
ISSUE_LINES: dict[str, tuple[str, ...]] = {
    "slow": ("your rate is too slow, speed up",
             "too slow, that's only about {rate} a minute",
             "the rhythm is dragging, compress quicker",
             "faster please, your compression rate is way under a hundred",
             "pick up the pace, you're pushing too slowly",
             "that tempo is far too slow"),
    "shallow": ("not deep enough, push the chest down further",
                "your compressions are too shallow",
                "only about {depth} centimetres, you need at least five",
                "push harder, that depth is insufficient",
                "you're pressing too lightly, go deeper"),
    "deep": ("you're pressing too deep, ease off",
             "too much depth, over six centimetres",
             "not so hard, about {depth} centimetres is too deep",
             "that's excessive force, push less far",
             "you're compressing way too deep, back off a little"),
    "overlap": ("your hands are just overlapping, lace your fingers",
                "the hands are stacked on top of each other, fingers loose",
                "don't just lay one hand over the other, lock the fingers in",
                "one palm is simply resting on the other hand"),
    "clench": ("your hands are clenched into a fist",
               "stop clenching your fists, open the hands",
               "no fists, lace the fingers instead",
               "you're clenching your hands together, relax them"),
    "single": ("you're pressing with one hand only",
               "use both of your hands, not just the one",
               "get your second hand on there too",
               "one hand isn't enough, put the other one on top"),
    "bent": ("your arms are bent",
             "don't bend your arms, lock the elbows",
             "your elbows keep bending, keep them straight",
             "you're pumping with bent elbows"),
    "tilted": ("your arms are tilted to the side",
               "your arms are at an angle, get them upright",
               "you're leaning sideways, shoulders over your hands",
               "the arms are slanted, they should point straight down"),
    "jumping": ("you're jumping with every push",
                "stop jumping up and down",
                "your knees jump off the floor each time you push",
                "no jumping, stay down on your knees"),
    "squat": ("you're squatting, not kneeling",
              "get out of that squat and onto your knees",
              "don't squat over him, knees on the floor",
              "you're crouching in a squat, go down to your knees"),
    "stand": ("you're standing, get down beside him",
              "don't do this standing up, knees on the floor",
              "you can't compress properly from standing",
              "stop standing over him, get onto your knees"),
    "off_centre": ("your hands are too low, that's the belly",
                   "wrong hand placement, move up to the centre of the chest",
                   "you're pushing on the stomach, slide your hands up",
                   "hands are off the breastbone, find the lower half of the sternum"),
    "wandering": ("your hands keep moving around",
                  "you're pressing in random spots, stay in the same place",
                  "don't shift your hands between pushes",
                  "the hand position changes every compression, pick one spot"),
}

# aspect -> remarks on a part done well
PRAISE_LINES: dict[str, tuple[str, ...]] = {
    "rate": ("good pace, right around {rate} a minute", "nice steady rhythm",
             "that tempo is spot on"),
    "depth": ("depth looks good, about five centimetres", "good depth",
              "good push, let the chest come back up"),
    "hands": ("good grip, fingers laced", "hands locked together nicely"),
    "arms": ("good arm position", "good, elbows locked"),
    "posture": ("good, down on your knees", "nice stable position beside him"),
    "place": ("hands right in the centre of the chest", "good spot on the breastbone"),
}
# the aspect each issue is about (a praised aspect never contradicts an issue)
ISSUE_ASPECT = {"slow": "rate", "shallow": "depth", "deep": "depth", "overlap": "hands",
                "clench": "hands", "single": "hands", "bent": "arms", "tilted": "arms",
                "jumping": "posture", "squat": "posture", "stand": "posture",
                "off_centre": "place", "wandering": "place"}
FILLER_LINES = ("keep going", "okay, and again", "count out loud for me", "stay with it",
                "right, don't stop", "and again")
ALL_GOOD_LINES = ("that's correct, no mistakes at all",
                  "perfect compressions, exactly how it should look",
                  "no errors there, keep doing exactly that",
                  "well done, everything looks right")

# ASR: words a recogniser mishears, with what it writes instead
CONFUSIONS: dict[str, tuple[str, ...]] = {
    "hands": ("hans", "hence"), "hand": ("and", "han"), "chest": ("test", "chess"),
    "deeper": ("cheaper", "keeper"), "faster": ("master", "pastor"), "knees": ("keys", "niece"),
    "elbows": ("elbow", "el bows"), "arms": ("alarms", "arm"), "straight": ("strait", "great"),
    "push": ("bush", "posh"), "pushes": ("bushes", "pushers"), "slow": ("low", "so"),
    "fingers": ("finger", "figures"), "fist": ("first", "fixed"), "rhythm": ("rhythms", "with"),
    "depth": ("death", "dept"), "lock": ("look", "locked"), "shallow": ("shadow", "hollow"),
    "pace": ("face", "place"), "breastbone": ("breast bone", "best bone"), "too": ("to", "two"),
    "your": ("you're", "you"), "good": ("could", "would"), "bouncing": ("pouncing", "bounty"),
    "leaning": ("leaving", "learning"), "knees": ("needs", "keys"), "feet": ("fit", "feat"),
    "crouch": ("couch", "crutch"), "quicker": ("quick", "liquor"), "force": ("forks", "fours"),
}
FILLERS = ("uh", "um", "so", "okay", "right", "and", "yeah")


def _fill(template: str, f: TakeFacts, rng: np.random.Generator) -> str:
    # said aloud: the rate to the nearest 5, the depth to the half centimetre, seen by eye
    rate = int(5 * round((f.rate + rng.normal(0, 3)) / 5))
    depth = max(0.5, round(2 * (f.depth_cm + rng.normal(0, 0.3))) / 2)
    return template.format(rate=rate, depth=f"{depth:g}")


def asr_noise(text: str, wer: float, rng: np.random.Generator) -> str:
    """``text`` as a speech recogniser might write it: lower case, no punctuation, about ``wer``
    of the words wrong (half substituted, a quarter dropped, a quarter extra fillers)."""
    words = re.findall(r"[a-z0-9']+(?:\.[0-9]+)?", text.lower())
    out: list[str] = []
    for w in words:
        if rng.random() < 0.25 * wer:
            out.append(FILLERS[rng.integers(len(FILLERS))])
        r = rng.random()
        if r < 0.5 * wer:
            alts = CONFUSIONS.get(w)
            if alts:
                out.append(alts[rng.integers(len(alts))])
            else:  # a near miss: a word of the same start, or a common short word
                out.append(FILLERS[rng.integers(len(FILLERS))] if len(w) <= 3 else w[:-1])
        elif r < 0.75 * wer:
            continue  # dropped
        else:
            out.append(w)
    return " ".join(out) if out else (words[0] if words else "")


# --------------------------------------------------------------------------------------------
# The three levels.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    start: float  # seconds from the take's first frame
    end: float
    text: str


@dataclass(frozen=True)
class TakeNarration:
    take_id: str
    session: str
    duration: float
    lines: tuple[Line, ...]
    keystep: str


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def commentary(f: TakeFacts, duration: float, rng: np.random.Generator, wer: float = 0.12,
               omit: float = 0.15) -> tuple[Line, ...]:
    """2-3 timed lines over ``duration`` seconds. Each issue is raised in one line (left out
    with probability ``omit``) and repeated later now and then; lines without an issue praise an
    aspect done well or just encourage. Timing: each line's window is its share of the take,
    late by ~0.2 s (speech follows what is seen) and jittered by ~0.25 s."""
    n = 3 if duration >= 2.4 and rng.random() < 0.6 else 2 if duration >= 1.2 else 1
    issues = [i for i in rng.permutation(list(f.issues)).tolist() if rng.random() >= omit] \
        if f.issues else []
    said: list[list[str]] = [[] for _ in range(n)]
    for k, issue in enumerate(issues):  # spread over the lines, the first ones first
        said[min(k * n // max(len(issues), 1), n - 1)].append(issue)
    for j in range(1, n):  # an instructor repeats what is still wrong
        if not said[j] and issues and rng.random() < 0.4:
            said[j].append(issues[int(rng.integers(len(issues)))])
    wrong_aspects = {ISSUE_ASPECT[i] for i in f.issues}
    good = [a for a in PRAISE_LINES if a not in wrong_aspects]
    lines: list[Line] = []
    step = duration / n
    for j in range(n):
        parts = [_fill(_pick(ISSUE_LINES[i], rng), f, rng) for i in said[j][:2]]
        if not parts:
            if not f.issues and rng.random() < 0.5:
                parts.append(_pick(ALL_GOOD_LINES, rng))
            elif good and rng.random() < 0.4:
                parts.append(_fill(_pick(PRAISE_LINES[good[int(rng.integers(len(good)))]], rng),
                                   f, rng))
            else:
                parts.append(_pick(FILLER_LINES, rng))
        elif good and rng.random() < 0.15:  # "good depth, but your elbows..."
            parts.insert(0, _fill(_pick(PRAISE_LINES[good[int(rng.integers(len(good)))]], rng),
                                  f, rng))
        start = float(np.clip(j * step + 0.2 + rng.normal(0, 0.25), 0.0,
                              max(duration - 0.4, 0.0)))
        end = float(np.clip((j + 1) * step + 0.2 + rng.normal(0, 0.25),
                            min(start + 0.4, duration), duration))
        lines.append(Line(round(start, 2), round(end, 2), asr_noise(", ".join(parts), wer, rng)))
    return tuple(sorted(lines, key=lambda x: x.start))


_KEYSTEP_ISSUE = {"slow": ("at a slow rate", "with too low a compression rate"),
                  "shallow": ("too shallow", "with too little depth"),
                  "deep": ("too deep", "with too much depth"),
                  "overlap": ("with the hands overlapping", "with the fingers not laced"),
                  "clench": ("with clenched fists", "with the hands in a fist"),
                  "single": ("with one hand", "one-handed"),
                  "bent": ("with bent arms", "with the elbows bent"),
                  "tilted": ("with tilted arms", "with the arms at an angle"),
                  "jumping": ("while jumping", "with the knees jumping off the floor"),
                  "squat": ("from a squat", "squatting beside the manikin"),
                  "stand": ("while standing", "from a standing position"),
                  "off_centre": ("with the hands on the abdomen", "too low on the belly"),
                  "wandering": ("with the hands moving around", "at a new spot each time")}


def keystep(f: TakeFacts, rng: np.random.Generator) -> str:
    """One clean line naming the take's step and how it deviates, as a written list of steps
    would ("Chest compressions with bent arms and too shallow"); a take without a problem is
    named as done to standard."""
    head = _pick(("Chest compressions", "CPR compressions", "Compressions on the manikin"), rng)
    if not f.issues:
        return head + " " + _pick(("done correctly", "to standard, rate and depth right",
                                   "without any error"), rng) + "."
    parts = [_pick(_KEYSTEP_ISSUE[i], rng) for i in f.issues]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{head} {body}."


_ISSUE_NOUN = {"slow": "a slow rhythm", "shallow": "shallow presses", "deep": "presses far too deep",
               "overlap": "loosely stacked hands", "clench": "fists instead of laced fingers",
               "single": "one-handed pushing", "bent": "bent elbows", "tilted": "slanted arms",
               "jumping": "bouncing knees", "squat": "crouching", "stand": "working from the feet",
               "off_centre": "hands on the belly", "wandering": "hands drifting between pushes"}


def abstract(session: str, facts: Sequence[TakeFacts], rng: np.random.Generator) -> str:
    """One paragraph on a session (one participant's takes): how many rounds, their typical
    rate and depth, which problems came up and how often, and how many rounds were clean."""
    n = len(facts)
    rates = np.array([f.rate for f in facts])
    depths = np.array([f.depth_cm for f in facts])
    counts: dict[str, int] = {}
    for f in facts:
        for i in f.issues:
            counts[i] = counts.get(i, 0) + 1
    clean = sum(not f.issues for f in facts)
    order = sorted(counts, key=lambda i: (-counts[i], i))
    said = ", ".join(f"{_ISSUE_NOUN[i]} ({counts[i]}x)" for i in order)
    opening = _pick(("Practice session of trainee {s}", "Session report for {s}",
                     "Training round summary, trainee {s}"), rng).format(s=session)
    return (f"{opening}: {n} rounds of chest compressions. Typical rhythm {np.median(rates):.0f} "
            f"per minute, typical depth {np.median(depths):.1f} cm. {clean} round(s) needed no "
            f"correction. The instructor pointed out {said or 'nothing'}.")


# --------------------------------------------------------------------------------------------
# Files.
# --------------------------------------------------------------------------------------------


def narrate_takes(cfg: Any, takes: Sequence[Any]) -> tuple[dict[str, TakeNarration],
                                                          dict[str, str]]:
    """The narration of every take and the abstract of every session (participant) of ``cfg``
    (a ``SynthConfig``); pure: nothing is written. Each take's text draws from its own stream
    (dataset seed, "narration", take_id), its keystep from (dataset seed, "keystep", take_id),
    each session's abstract from (dataset seed, "abstract", name)."""
    from synth.render import derive_seed, sample_motion, sample_participant

    duration = round(cfg.frames / cfg.fps, 3)
    out: dict[str, TakeNarration] = {}
    by_session: dict[str, list[TakeFacts]] = {}
    for take in takes:
        m = sample_motion(take.labels, sample_participant(take.participant, cfg.seed), take.seed,
                          cfg.frames, cfg.fps)
        f = facts_of_motion(m)
        rng = np.random.default_rng(derive_seed(cfg.seed, "narration", take.take_id))
        session = f"p{take.participant + 1}"
        lines = commentary(f, duration, rng, cfg.narration_wer)
        # the keystep has its own stream: the commentary's noise settings never change it
        ks = keystep(f, np.random.default_rng(derive_seed(cfg.seed, "keystep", take.take_id)))
        out[take.take_id] = TakeNarration(take.take_id, session, duration, lines, ks)
        by_session.setdefault(session, []).append(f)
    abstracts = {s: abstract(s, fs, np.random.default_rng(derive_seed(cfg.seed, "abstract", s)))
                 for s, fs in by_session.items()}
    return out, abstracts


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_narrations(cfg: Any, takes: Sequence[Any], root: str | Path) -> dict[str, Path]:
    """Write ``<root>/narration/<take_id>.json`` and ``sessions/<session>.json`` for ``takes``
    (each complete or absent: pipeline.atomic); returns take_id -> take file. Cheap (no
    rendering), so a rerun rewrites them all."""
    folder = Path(root) / NARRATION_DIR
    narrs, abstracts = narrate_takes(cfg, takes)
    members: dict[str, list[str]] = {}
    paths: dict[str, Path] = {}
    for tid, n in narrs.items():
        members.setdefault(n.session, []).append(tid)
        path = safe_child(folder, tid, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, _json({
            "schema": SCHEMA, "take_id": tid, "session": n.session, "duration": n.duration,
            "lines": [{"start": ln.start, "end": ln.end, "text": ln.text} for ln in n.lines],
            "keystep": n.keystep,
            "session_file": f"{SESSIONS_DIR}/{safe_child(folder, n.session, '.json').name}"}))
        paths[tid] = path
    for s, text in abstracts.items():
        path = safe_child(folder / SESSIONS_DIR, s, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, _json({"schema": SCHEMA, "session": s, "abstract": text,
                                  "takes": sorted(members[s])}))
    log.info("narrations of %d takes and %d sessions in %s", len(narrs), len(abstracts), folder)
    return paths


@dataclass(frozen=True)
class TakeFile:
    """A take file as read back (:func:`read_take`), with its session's abstract."""

    path: Path
    take_id: str
    session: str
    duration: float
    lines: tuple[Line, ...]
    keystep: str
    abstract: str


def _load_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NarrationError(f"{path}: narration file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NarrationError(f"{path}: not a readable JSON narration file ({e})") from None
    if not isinstance(obj, dict):
        raise NarrationError(f"{path}: not a JSON object")
    if obj.get("schema") != SCHEMA:
        raise NarrationError(f"{path}: field 'schema' is {obj.get('schema')!r}, this code reads "
                             f"{SCHEMA!r}")
    return obj


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v.strip():
        raise NarrationError(f"{where}: field {key!r} must be a non-empty string, got {v!r}")
    return v


def read_take(path: str | Path) -> TakeFile:
    """A take file and its session's abstract, checked: every problem raises a one-line
    NarrationError naming the file and the field (and the line number of a bad line)."""
    path = Path(path)
    obj = _load_json(path)
    where = str(path)
    tid, session = _text(obj, "take_id", where), _text(obj, "session", where)
    dur = obj.get("duration")
    if not isinstance(dur, (int, float)) or not dur > 0:
        raise NarrationError(f"{where}: field 'duration' must be a number of seconds > 0, got "
                             f"{dur!r}")
    raw = obj.get("lines")
    if not isinstance(raw, list):
        raise NarrationError(f"{where}: field 'lines' must be a list of {{start, end, text}}")
    lines = []
    for i, ln in enumerate(raw):
        w = f"{where}: lines[{i}]"
        if not isinstance(ln, dict):
            raise NarrationError(f"{w}: not an object with start, end, text")
        s, e = ln.get("start"), ln.get("end")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (s, e)):
            raise NarrationError(f"{w}: 'start' and 'end' must be numbers (seconds), got {s!r}, "
                                 f"{e!r}")
        if not 0 <= s < e <= dur + 1e-6:
            raise NarrationError(f"{w}: needs 0 <= start < end <= duration ({dur}), got "
                                 f"{s}..{e}")
        lines.append(Line(float(s), float(e), _text(ln, "text", w)))
    ks = _text(obj, "keystep", where)
    sf = _text(obj, "session_file", where)
    spath = (path.parent / sf).resolve()
    if not spath.is_relative_to(path.parent.resolve()):
        raise NarrationError(f"{where}: field 'session_file' {sf!r} leaves the narration folder")
    sobj = _load_json(spath)
    if sobj.get("session") != session:
        raise NarrationError(f"{spath}: field 'session' is {sobj.get('session')!r}, but {path} "
                             f"says {session!r}")
    return TakeFile(path, tid, session, float(dur), tuple(lines), ks,
                    _text(sobj, "abstract", str(spath)))


# --------------------------------------------------------------------------------------------
# ``cprclip narrate``: narrations for a dataset that synth made before they existed.
# --------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_config_arguments

    add_config_arguments(p)


def main(args: argparse.Namespace) -> int:
    """Write the narration files of the ``[synth]`` dataset beside its manifest. Nothing is
    rendered and the manifest is not rewritten; the folder's ``synth.json`` must record the same
    content config (else the narrations would describe other videos)."""
    import sys

    from pipeline.config import load_stage_config
    from synth.config import SynthConfig
    from synth.plan import plan_takes, select_takes
    from synth.runner import check_same_dataset

    cfg = load_stage_config(SynthConfig, "synth", args.config, args.overrides)
    root = Path(cfg.manifest).parent
    check_same_dataset(root / "synth.json", cfg)
    takes = select_takes(plan_takes(cfg), cfg.max_takes)
    write_narrations(cfg, takes, root)
    sys.stdout.write(f"{root / NARRATION_DIR}\n")
    return 0
