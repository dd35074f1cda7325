import logging
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from pipeline.config import (SECTIONS, ConfigError, build, check_agreement, check_fields,
                             check_range, load_stage_config, read_toml, section_class, to_json)

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoConfig:
    dataset: str = "synthetic"
    segments: int = 8
    lr: float = 0.1
    amp: bool = False
    modalities: tuple[str, ...] = ("rgb",)
    checkpoint: str | None = None


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_toml_common_and_overrides(tmp_path):
    p = write(tmp_path, '[common]\ndataset = "x"\nseed = 1\n[demo]\nsegments = 4\n')
    cfg = load_stage_config(DemoConfig, "demo", p, ["lr=0.5", "amp=true", "modalities=rgb,flow"])
    assert cfg == DemoConfig("x", 4, 0.5, True, ("rgb", "flow"), None)
    with pytest.raises(Exception):
        cfg.segments = 3  # frozen: nothing changes the config at run time
    assert '"segments": 4' in to_json(cfg)


def test_unknown_key_lists_valid_keys(tmp_path):
    p = write(tmp_path, "[demo]\nsegmnts = 4\n")
    with pytest.raises(ConfigError) as e:
        load_stage_config(DemoConfig, "demo", p)
    assert "segmnts" in str(e.value) and "segments" in str(e.value) and "lr" in str(e.value)
    with pytest.raises(ConfigError, match="valid keys are"):
        load_stage_config(DemoConfig, "demo", None, ["nope=1"])


@pytest.mark.parametrize("override,fragment", [
    ("segments=eight", "expected an integer"),
    ("amp=maybe", "true/false"),
    ("lr=fast", "expected a number"),
    ("segments", "not key=value"),
])
def test_wrong_types_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_stage_config(DemoConfig, "demo", None, [override])


def test_wrong_type_in_toml_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="key 'segments'"):
        load_stage_config(DemoConfig, "demo", write(tmp_path, '[demo]\nsegments = "a"\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_stage_config(DemoConfig, "demo", write(tmp_path, "[demo\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_stage_config(DemoConfig, "demo", tmp_path / "missing.toml")


def test_optional_none():
    assert load_stage_config(DemoConfig, "demo", None, ["checkpoint=none"]).checkpoint is None
    assert load_stage_config(DemoConfig, "demo", None, ["checkpoint=a.pth"]).checkpoint == "a.pth"


# --- the section table and every shipped config ---------------------------------------------

def test_every_shipped_config_loads():
    """Each section of each shipped TOML builds the dataclass SECTIONS names for it, and every
    entry of SECTIONS is exercised by some shipped config."""
    seen = set()
    paths = sorted((ROOT / "configs").glob("*.toml"))
    assert paths
    for path in paths:
        for section in read_toml(path):
            if section == "common":
                continue
            assert section in SECTIONS, f"{path.name}: [{section}] is not in pipeline.config.SECTIONS"
            cls = section_class(section)
            cfg = load_stage_config(cls, section, path)
            assert type(cfg) is cls
            seen.add(section)
    assert seen == set(SECTIONS)


def test_every_stage_dataclass_follows_the_convention():
    """Frozen, validated in __post_init__ (no separate validate()), and one name per concept."""
    old_names = {"modality": "modalities", "schedule": "lr_schedule", "threads": "num_threads"}
    problems = []
    for section in SECTIONS:
        cls = section_class(section)
        if not cls.__dataclass_params__.frozen:
            problems.append(f"[{section}] is not frozen")
        if "__post_init__" not in vars(cls):
            problems.append(f"[{section}] does not validate in __post_init__")
        if hasattr(cls, "validate"):
            problems.append(f"[{section}] still has validate()")
        fields = set(cls.__dataclass_fields__)
        problems += [f"[{section}] key '{old}' should be '{new}' (with RENAMED)"
                     for old, new in old_names.items() if old in fields]
    if "workers" in section_class("serve").__dataclass_fields__:
        problems.append("[serve] workers (concurrent takes) should be max_concurrent_takes")
    assert not problems, "\n".join(problems)


def test_choice_literals_match_their_tables():
    from evaluate import metrics as M
    from evaluate import runner as R
    from extract import backbones, decoders, flow, flow_cli, transforms
    from pipeline import features
    from train import config as T

    args = typing.get_args
    assert set(args(backbones.BackboneName)) == set(backbones.BACKBONES)
    assert set(args(decoders.DecoderChoice)) == {"auto", *decoders.DECODERS}
    assert args(transforms.Crop) == transforms.CROPS
    assert set(args(flow_cli.FlowMethod)) == set(flow.FLOW_METHODS)
    assert set(args(T.ModelName)) == set(T.MODELS)
    assert set(args(R.NoPositivePolicy)) == set(M.NO_POSITIVE_POLICIES)
    assert set(args(R.ThresholdRule)) == set(M.THRESHOLD_RULES)
    assert features.MODALITIES == ("rgb", "flow", "skeleton")


# --- the whole file: sections, [common], what --config names --------------------------------

def test_unknown_section_is_an_error_listing_the_valid_ones(tmp_path):
    from train.config import TrainConfig

    p = write(tmp_path, "[trian]\nepochs = 1\n")
    with pytest.raises(ConfigError) as e:
        load_stage_config(TrainConfig, "train", p)
    msg = str(e.value)
    assert "[trian]" in msg and "did you mean [train]" in msg and "extract" in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match="outside any section"):
        load_stage_config(TrainConfig, "train", write(tmp_path, "epochs = 1\n[train]\n"))


def test_common_key_no_stage_knows_is_an_error(tmp_path):
    from train.config import TrainConfig

    p = write(tmp_path, '[common]\nfeaturs_dir = "f"\n[train]\n')
    with pytest.raises(ConfigError) as e:
        load_stage_config(TrainConfig, "train", p)
    assert "featurs_dir" in str(e.value) and "did you mean 'features_dir'" in str(e.value)
    # a key of another stage is fine in [common]: that stage takes it, train ignores it
    p = write(tmp_path, '[common]\ncrop_size = 112\n[train]\n')
    assert load_stage_config(TrainConfig, "train", p).epochs == 100


@pytest.mark.parametrize("text,fragment", [
    ("common = 3\n", "[common] must be a table"),
    ("train = 3\n", "[train] must be a table"),
])
def test_sections_must_be_tables(tmp_path, text, fragment):
    from train.config import TrainConfig

    with pytest.raises(ConfigError) as e:
        load_stage_config(TrainConfig, "train", write(tmp_path, text))
    assert fragment in str(e.value)


def test_folder_as_config_and_file_as_features_dir(tmp_path):
    from train.config import TrainConfig

    with pytest.raises(ConfigError, match="is a folder"):
        load_stage_config(TrainConfig, "train", tmp_path)
    f = tmp_path / "not_a_folder"
    f.write_text("x")
    with pytest.raises(ConfigError, match="key 'features_dir'.*is a file, not a folder"):
        load_stage_config(TrainConfig, "train", None, [f"features_dir={f}"])
    p = write(tmp_path, f'[common]\nfeatures_dir = "{f}"\n[train]\n')
    with pytest.raises(ConfigError, match="features_dir"):
        load_stage_config(TrainConfig, "train", p)


@pytest.mark.parametrize("args", [
    ["train", "--config", "{tmp}"],
    ["extract", "--config", "{tmp}"],
    ["train", "--config", "{toml}"],
    ["train", "--config", "configs/synthetic.toml", "features_dir={file}"],
])
def test_cli_config_faults_are_one_line(tmp_path, capsys, args):
    from pipeline.cli import main

    (tmp_path / "afile").write_text("x")
    (tmp_path / "common.toml").write_text("common = 1\n")
    args = [a.format(tmp=tmp_path, file=tmp_path / "afile", toml=tmp_path / "common.toml")
            for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "config error" in line]) == 1


# --- values: Literal choices, ranges, NaN, direct construction ------------------------------

@pytest.mark.parametrize("section,override,key", [
    ("train", "lr=-1", "lr"),
    ("train", "lr=nan", "lr"),
    ("train", "lr=inf", "lr"),
    ("train", "dropout=2", "dropout"),
    ("train", "logit_scale=0", "logit_scale"),
    ("train", "imagine_per_epoch=-10", "imagine_per_epoch"),
    ("train", "keep_singles=1.5", "keep_singles"),
    ("train", "fusion=sum", "fusion"),
    ("train", "modalities=rgb,depth", "modalities"),
    ("train", "models=clip", "models"),
    ("train", "device=gpu", "device"),
    ("eval", "bce_default_threshold=5", "bce_default_threshold"),
    ("eval", "decision_fusion=median", "decision_fusion"),
    ("eval", "clip_fallback_z=nan", "clip_fallback_z"),
    ("extract", "backbone=resnet", "backbone"),
    ("extract", "crop=corner", "crop"),
    ("extract", "decoder=ffmpeg", "decoder"),
    ("extract", "workers=-1", "workers"),
    ("extract", "segments=0", "segments"),
    ("flow", "bound=0", "bound"),
    ("flow", "method=lk", "method"),
    ("flow", "preset=turbo", "preset"),
])
def test_bad_values_are_one_line_errors_naming_the_key(section, override, key):
    with pytest.raises(ConfigError) as e:
        load_stage_config(section_class(section), section, None, [override])
    msg = str(e.value)
    assert f"'{key}'" in msg and "\n" not in msg, msg


def test_nan_in_toml_is_refused(tmp_path):
    from train.config import TrainConfig

    with pytest.raises(ConfigError, match="key 'lr'.*finite"):
        load_stage_config(TrainConfig, "train", write(tmp_path, "[train]\nlr = nan\n"))


def test_a_config_built_in_code_is_checked_too():
    from evaluate.runner import EvalConfig
    from extract.runner import ExtractConfig
    from train.config import TrainConfig

    with pytest.raises(ConfigError, match=r"\[train\] key 'lr'"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ConfigError, match=r"\[train\] key 'lr'"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ConfigError, match=r"\[train\] key 'pooling'"):
        TrainConfig(pooling="max")
    with pytest.raises(ConfigError, match=r"\[train\] key 'modalities'"):
        TrainConfig(modalities=("rgb", "depth"))
    with pytest.raises(ConfigError, match=r"\[eval\] key 'decision_fusion'"):
        EvalConfig(decision_fusion="median")
    with pytest.raises(ConfigError, match=r"\[extract\] key 'crop_size'"):
        ExtractConfig(crop_size=300, short_side=256)


def test_build_validates_once():
    calls = []

    @dataclass(frozen=True)
    class Counted:
        n: int = 1

        def __post_init__(self):
            calls.append(self.n)

        def validate(self):  # an old-style hook must not run a second time
            calls.append("validate")

    build(Counted, {"n": 3})
    assert calls == [3]


def test_check_helpers():
    @dataclass(frozen=True)
    class Demo:
        SECTION: ClassVar[str] = "demo"
        x: float = 0.5
        pick: Literal["a", "b"] = "a"
        picks: tuple[Literal["a", "b"], ...] = ("a",)
        maybe: Literal["a"] | None = None

    check_range(Demo(), "x", ge=0, le=1)
    with pytest.raises(ConfigError, match=r"^\[demo\] key 'x': must be > 0.5 and < 1, got 0.5$"):
        check_range(Demo(), "x", gt=0.5, lt=1)
    with pytest.raises(ConfigError, match="key 'x'"):
        check_range(Demo(x=float("nan")), "x", ge=0)
    check_fields(Demo())
    check_fields(Demo(maybe="a"))
    for bad in (Demo(pick="c"), Demo(picks=("a", "c")), Demo(maybe="b"), Demo(x=float("inf"))):
        with pytest.raises(ConfigError, match=r"^\[demo\] key '"):
            check_fields(bad)


# --- renamed keys ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Renamed:
    RENAMED: ClassVar[dict[str, str]] = {"schedule": "lr_schedule", "threads": "num_threads"}
    lr_schedule: str = "cosine"
    num_threads: int = 0


def test_old_key_names_still_work_with_a_warning(tmp_path, caplog):
    p = write(tmp_path, '[common]\nthreads = 2\n[demo]\nschedule = "step"\n')
    with caplog.at_level(logging.WARNING):
        cfg = load_stage_config(Renamed, "demo", p)
    assert cfg == Renamed("step", 2)
    said = caplog.text
    assert "'schedule' is now called 'lr_schedule'" in said
    assert "'threads' is now called 'num_threads'" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_stage_config(Renamed, "demo", None, ["threads=3"]).num_threads == 3
    assert "num_threads" in caplog.text
    with pytest.raises(ConfigError, match="old name of 'lr_schedule'"):
        load_stage_config(Renamed, "demo",
                          write(tmp_path, '[demo]\nschedule = "a"\nlr_schedule = "b"\n'))


# --- agreement between sections ----------------------------------------------------------------

AGREEING = """
[finetune]
backbone = "tsn_r18"
crop_size = 112
short_side = 128
[extract]
backbone = "tsn_r18"
segments = 8
crop_size = 112
short_side = 128
checkpoint = "auto"
[train]
backbone = "tsn_r18"
segments = 8
"""


@pytest.mark.parametrize("old,new,names", [
    ('[train]\nbackbone = "tsn_r18"', '[train]\nbackbone = "tsn_r50"', ("[finetune]", "[train]")),
    ('[extract]\nbackbone = "tsn_r18"', '[extract]\nbackbone = "tsm_r18"',
     ("[finetune]", "[extract]")),
    ('[train]\nbackbone = "tsn_r18"\nsegments = 8', '[train]\nbackbone = "tsn_r18"\nsegments = 4',
     ("[extract]", "[train]")),
    ('[finetune]\nbackbone = "tsn_r18"\ncrop_size = 112', '[finetune]\nbackbone = "tsn_r18"\n'
     'crop_size = 96', ("[finetune]", "[extract]")),
])
def test_sections_that_must_agree(tmp_path, old, new, names):
    from train.config import TrainConfig

    check_agreement(write(tmp_path, AGREEING))
    assert old in AGREEING
    p = write(tmp_path, AGREEING.replace(old, new))
    with pytest.raises(ConfigError) as e:
        check_agreement(p)
    assert all(n in str(e.value) for n in names), str(e.value)
    with pytest.raises(ConfigError, match="must agree"):  # every stage's loader checks it
        load_stage_config(TrainConfig, "train", p)


def test_crops_may_differ_when_extract_does_not_use_finetuned_weights(tmp_path):
    text = AGREEING.replace("crop_size = 112\nshort_side = 128\n[extract]",
                            "crop_size = 96\nshort_side = 128\n[extract]")
    with pytest.raises(ConfigError, match="crop_size"):
        check_agreement(write(tmp_path, text))
    check_agreement(write(tmp_path, text.replace('checkpoint = "auto"', 'checkpoint = "none"')))


def test_a_default_counts_as_the_value(tmp_path):
    # [train] without a backbone trains on the default (tsn_r50) features
    with pytest.raises(ConfigError, match=r"\[extract\] backbone = 'tsn_r18' but \[train\]"):
        check_agreement(write(tmp_path, '[extract]\nbackbone = "tsn_r18"\n[train]\nepochs = 1\n'))


def test_checkpoint_auto_without_weights_warns(tmp_path, caplog):
    from extract.backbones import resolve_checkpoint

    looked = tmp_path / "finetuned" / "tsn_r18-rgb" / "checkpoint.safetensors"
    with caplog.at_level(logging.INFO, logger="extract.backbones"):
        assert resolve_checkpoint("auto", looked, "tsn_r18", "rgb") is None
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "RANDOM" in warned[0].getMessage()
    assert str(looked) in warned[0].getMessage()
