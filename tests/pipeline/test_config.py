from dataclasses import dataclass, field

import pytest

from pipeline.config import ConfigError, load_stage_config, to_json


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
    p = write(tmp_path, '[common]\ndataset = "x"\nunrelated = 1\n[demo]\nsegments = 4\n')
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


def test_every_shipped_config_loads():
    """Each stage section of each shipped TOML builds its stage's dataclass."""
    import importlib
    from pathlib import Path

    from pipeline.config import read_toml

    sections = {
        "synth": ("pipeline.synth", "SynthConfig"),
        "flow": ("extract.flow_cli", "FlowConfig"),
        "extract": ("extract.runner", "ExtractConfig"),
        "finetune": ("train.finetune", "FinetuneConfig"),
        "train": ("train.config", "TrainConfig"),
        "eval": ("evaluate.runner", "EvalConfig"),
        "predict": ("evaluate.assistant", "PredictConfig"),
        "serve": ("evaluate.serve", "ServeConfig"),
    }
    root = Path(__file__).resolve().parents[2] / "configs"
    checked = 0
    for path in sorted(root.glob("*.toml")):
        data = read_toml(path)
        for section in data:
            if section == "common":
                continue
            module, name = sections[section]
            cls = getattr(importlib.import_module(module), name)
            load_stage_config(cls, section, path)
            checked += 1
    assert checked >= 2 * len(sections) - 2  # finetune may be absent from a config
