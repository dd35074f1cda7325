"""The synthetic multi-view CPR world: people, motions, cameras, rendering and encoding.

- ``synth.config``: ``SynthConfig``, the ``[synth]`` section;
- ``synth.plan``: which takes exist (split, label set, participant, seed);
- ``synth.render``: one clip's frames in memory (pure numpy plus cv2, no files);
- ``synth.runner``: ``generate``, which encodes every video with ffmpeg and writes the manifest;
- ``synth.cli``: ``cprclip synth``.

The names below are the API other stages' tests use.
"""
from synth.config import SynthConfig
from synth.plan import Take, plan_takes
from synth.render import derive_seed, iter_frames, render_clip
from synth.runner import generate

__all__ = ["SynthConfig", "Take", "plan_takes", "generate", "render_clip", "iter_frames",
           "derive_seed"]
