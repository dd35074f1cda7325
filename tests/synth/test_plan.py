"""The dataset plan: splits, composite sets, config checks (no rendering)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_stage_config
from pipeline.taxonomy import NUM_CLASSES, is_valid_label_set
from synth.config import SynthConfig
from synth.plan import plan_takes, sample_composites, select_takes

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_demo_plan_matches_the_brief():
    cfg = load_stage_config(SynthConfig, "synth", CONFIGS / "synthetic.toml")
    takes = plan_takes(cfg)
    videos = Counter(t.split for t in takes for _ in range(cfg.views))
    assert videos == {"train": 224, "val": 112, "test": 296}
    assert len({t.take_id for t in takes}) == len(takes)
    train = [t for t in takes if t.split == "train"]
    val = [t for t in takes if t.split == "val"]
    test = [t for t in takes if t.split == "test"]
    # Train: p1..p4, one take per single class each.
    assert Counter((t.participant, t.labels) for t in train) == {
        (p, (k,)): 1 for p in range(4) for k in range(NUM_CLASSES)}
    # Val: the held-out people's singles; test: their composites, alternating people.
    assert {t.participant for t in val} == {4, 5} and all(len(t.labels) == 1 for t in val)
    assert len(val) == 2 * NUM_CLASSES
    assert [t.participant for t in test] == [4, 5] * 37
    sizes = Counter(len(t.labels) for t in test)
    assert sizes == {2: 59, 3: 10, 4: 5}
    assert len({t.labels for t in test}) == 74
    assert all(is_valid_label_set(t.labels) for t in test)


def test_composites_follow_the_seed():
    a = sample_composites(SynthConfig(seed=0))
    assert a == sample_composites(SynthConfig(seed=0))
    assert a != sample_composites(SynthConfig(seed=1))


def test_take_seeds_do_not_depend_on_the_order():
    full = {t.take_id: t.seed for t in plan_takes(SynthConfig())}
    small = plan_takes(SynthConfig(participants=5, held_out=1, n_double=3))
    shared = [t for t in small if t.take_id in full]
    assert shared and all(full[t.take_id] == t.seed for t in shared)


def test_max_takes_round_robins_over_splits():
    takes = plan_takes(SynthConfig())
    picked = select_takes(takes, 4)
    assert [t.split for t in picked] == ["train", "val", "test", "train"]
    assert select_takes(takes, 0) == takes


@pytest.mark.parametrize("override, message", [
    ({"resolution": "161x120"}, "even"),
    ({"resolution": "big"}, "WxH"),
    ({"held_out": 6}, "held_out"),
    ({"n_quad": 1000}, "n_quad"),
    ({"views": 5}, "views"),
    ({"dataset": "other"}, "manifest"),
    ({"crf": 60}, "crf"),
])
def test_bad_config_is_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_stage_config(SynthConfig, "synth", CONFIGS / "synthetic.toml", override)


def test_4k_resolutions_are_accepted():
    for res in ("3840x2160", "4096x2160"):
        cfg = load_stage_config(SynthConfig, "synth", None, {"resolution": res})
        assert cfg.size == tuple(int(v) for v in res.split("x"))
    cfg = load_stage_config(SynthConfig, "synth", CONFIGS / "cpr_coach.toml")
    assert cfg.size == (4096, 2160) and cfg.dataset == "synth_4k"
