"""Stage configs: TOML sections plus ``key=value`` overrides into frozen dataclasses.

Each stage keeps one frozen dataclass next to its code; :data:`SECTIONS` says which dataclass
reads which TOML table. A file holds one table per stage (``[synth]``, ``[extract]``, ...) and
an optional ``[common]`` table whose keys go to every stage that has a field of that name.
Overrides from the command line win over both.

The conventions every stage dataclass follows:

- a choice is a ``Literal`` field, checked by the loader and again by :func:`check_fields`;
- ``__post_init__`` validates (so a config built directly is checked too), with one-line
  :class:`ConfigError` messages that name the section and the key (:func:`check_range`);
- a key that was renamed stays readable through the class's ``RENAMED = {old: new}``: the old
  spelling works and logs a warning that names the new one;
- one name per concept across stages (``modalities``, ``lr_schedule``, ``num_threads``).

Unknown keys, unknown sections and ``[common]`` keys no stage knows are errors that list the
valid names, so a typo never silently does nothing. Values that must agree between sections
(the backbone of finetune, extract and train; ...) are checked by :func:`check_agreement`.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import logging
import math
import tomllib
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# TOML table -> "module:Class" of its stage dataclass. Imported lazily: loading one stage's
# config must not import every stage (and torch with it).
SECTIONS: dict[str, str] = {
    "synth": "synth.config:SynthConfig",
    "flow": "extract.flow_cli:FlowConfig",
    "pose": "extract.pose_cli:PoseConfig",
    "finetune": "finetune.config:FinetuneConfig",
    "extract": "extract.runner:ExtractConfig",
    "train": "train.config:TrainConfig",
    "regress": "train.regress:RegressConfig",  # `cprclip train/eval task=regress` (issue 19)
    "eval": "evaluate.runner:EvalConfig",
    "predict": "assist.assistant:PredictConfig",
    "serve": "assist.server:ServeConfig",
    "import_features": "extract.authors_features:ImportFeaturesConfig",
    "export_features": "extract.authors_features:ExportFeaturesConfig",
    "import_alphapose": "extract.alphapose:ImportAlphaPoseConfig",
    "frames": "frames.config:FramesConfig",
    "predict_frames": "frames.config:PredictFramesConfig",
    "narration": "narration.config:NarrationConfig",  # `cprclip train task=narration` (issue 20)
}
# The keys shipped configs put in [common]; any key of any stage may go there too, but these
# are accepted without importing every stage to find out.
COMMON_KEYS = ("dataset", "manifest", "features_dir", "runs_dir", "finetune_dir", "seed",
               "device")
# Keys that name a folder: an existing file there is an error before any stage starts.
FOLDER_KEYS = ("features_dir", "runs_dir", "finetune_dir", "report_dir", "flow_dir", "cache_dir",
               "text_cache_dir", "pose_dir", "frames_dir")


class ConfigError(ValueError):
    """A config file or override that does not fit the stage's dataclass."""


def section_class(section: str) -> type:
    """The dataclass of TOML table ``section`` (imports its module)."""
    try:
        target = SECTIONS[section]
    except KeyError:
        raise ConfigError(f"unknown section [{section}]; valid sections are: "
                          f"{', '.join(['common', *SECTIONS])}") from None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


# --------------------------------------------------------------------------------------------
# Types: coercion of TOML / override values, and the same checks on a directly built config


@lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _renamed(cls: type) -> dict[str, str]:
    return dict(getattr(cls, "RENAMED", {}) or {})


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (from TOML or a string override) to type ``tp``, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be None")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else str
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(out):  # nan passes every comparison: it would slip past ranges
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, (dict, list, tuple)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    return value


def _check_value(value: Any, tp: Any, where: str) -> None:
    """The loader's checks that matter for a config built in code: choices and finiteness."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be None")
    if origin in (tuple, list) and isinstance(value, (tuple, list)):
        inner = args[0] if args else None
        if inner is not None and inner is not Ellipsis:
            for v in value:
                _check_value(v, inner, where)
        return
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return
    if tp is float and isinstance(value, (int, float)) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")


def section_of(cfg_or_cls: Any) -> str:
    """The TOML table a stage dataclass reads (its ``SECTION``, else its class name)."""
    cls = cfg_or_cls if isinstance(cfg_or_cls, type) else type(cfg_or_cls)
    return getattr(cls, "SECTION", cls.__name__)


def check_fields(cfg: Any) -> None:
    """Check every ``Literal`` field (also inside tuples and Optionals) and reject NaN/Inf in
    float fields: call first in a stage dataclass's ``__post_init__``."""
    section = section_of(cfg)
    for name, tp in _field_types(type(cfg)).items():
        _check_value(getattr(cfg, name), tp, f"[{section}] key '{name}'")


def key_error(cfg: Any, key: str, msg: str) -> ConfigError:
    """``[section] key 'key': msg`` -- the one shape of a validation error."""
    return ConfigError(f"[{section_of(cfg)}] key '{key}': {msg}")


def check_range(cfg: Any, key: str, *, ge: float | None = None, gt: float | None = None,
                le: float | None = None, lt: float | None = None) -> None:
    """Raise a ConfigError naming ``key`` unless ``ge <= value`` / ``gt < value`` / ``value <= le``
    / ``value < lt`` (each bound optional). NaN never passes."""
    v = getattr(cfg, key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (ge is None or v >= ge) and (gt is None or v > gt)
    ok = ok and (le is None or v <= le) and (lt is None or v < lt)
    if ok:
        return
    bounds = [f"{op} {b}" for op, b in ((">=", ge), (">", gt), ("<=", le), ("<", lt))
              if b is not None]
    want = " and ".join(bounds) or "a finite number"
    raise key_error(cfg, key, f"must be {want}, got {v!r}")


def check_seed(cfg: Any, key: str = "seed") -> None:
    """A seed every consumer takes: ``torch.manual_seed`` wants a signed 64-bit one (a larger one
    was a traceback at the first step) and numpy refuses negative ones."""
    check_range(cfg, key, ge=0, lt=2**63)


def check_dataset_name(cfg: Any, key: str = "dataset") -> None:
    """``dataset`` names a folder (``features/<dataset>/``, ``finetuned/<dataset>/``): one safe
    folder name, so "../x" or "" cannot write beside or into the parent folder."""
    from pipeline.paths import name_problem

    problem = name_problem(getattr(cfg, key))
    if problem:
        raise key_error(cfg, key, f"{getattr(cfg, key)!r} {problem}")


def check_device(cfg: Any, key: str = "device") -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` -- an open set, so not a Literal."""
    v = getattr(cfg, key)
    if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
        return
    raise key_error(cfg, key, f"{v!r} is not auto, cpu, cuda, cuda:N or mps")


# --------------------------------------------------------------------------------------------
# Reading files and building configs


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; raises ConfigError on a malformed item."""
    out: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a TOML config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None


def _apply_renames(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Old spellings of renamed keys -> their new names, with a warning naming the new one."""
    out = dict(values)
    for old, new in _renamed(cls).items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{where}: key '{old}' is the old name of '{new}'; give only '{new}'")
        log.warning("%s: key '%s' is now called '%s'; the old name still works for now, "
                    "but please rename it", where, old, new)
        out[new] = out.pop(old)
    return out


def build(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``values``, checking names and types.

    Validation is the class's ``__post_init__``: it runs once, here as for a config built in
    code. A class not yet converted to that convention still gets its ``validate()`` called.
    """
    types_ = _field_types(cls)
    values = _apply_renames(cls, values, where)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(sorted(types_))}"
        )
    kwargs = {k: _coerce(v, types_[k], f"{where}: key '{k}'") for k, v in values.items()}
    try:
        cfg = cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None
    check = getattr(cfg, "validate", None)
    if callable(check) and "__post_init__" not in vars(cls):
        check()
    return cfg


@lru_cache(maxsize=None)
def _all_stage_keys() -> frozenset[str]:
    """Every field name (and old name) of every stage dataclass; imports every stage."""
    keys: set[str] = set()
    for section in SECTIONS:
        try:
            cls = section_class(section)
        except ImportError as e:  # a stage whose dependencies are missing here
            log.debug("[%s] not importable (%s); its keys are not known", section, e)
            continue
        keys.update(_field_types(cls))
        keys.update(_renamed(cls))
    return frozenset(keys)


def check_file(data: dict[str, Any], path: str | Path, section: str,
               known_here: set[str] = frozenset()) -> None:
    """The whole file's shape: known tables only, ``[common]`` a table of keys some stage knows.

    ``section`` (the table being loaded) is always accepted, so a tool's own dataclass can
    read its own table; ``known_here`` are that dataclass's keys.
    """
    valid = ["common", *SECTIONS] + ([section] if section not in SECTIONS else [])
    for name, table in data.items():
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: key '{name}' is outside any section{hint}; valid "
                                  f"sections are: {', '.join(valid)}")
            raise ConfigError(f"{path}: unknown section [{name}]{hint}; valid sections are: "
                              f"{', '.join(valid)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table, got {table!r}")
    common = data.get("common", {})
    unknown = sorted(set(common) - set(COMMON_KEYS) - set(known_here))
    if unknown:
        unknown = sorted(set(unknown) - _all_stage_keys())
    if unknown:
        everything = sorted(_all_stage_keys() | set(known_here))
        close = difflib.get_close_matches(unknown[0], everything, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{path}: [common] key(s) {', '.join(unknown)} known to no stage{hint}; "
                          f"[common] holds keys such as {', '.join(COMMON_KEYS)}, or any key of "
                          "a stage section")


def _check_folders(values: dict[str, Any], where: str) -> None:
    """A folder key naming an existing file would fail deep in a stage; say so up front."""
    for key in FOLDER_KEYS:
        v = values.get(key)
        if isinstance(v, str) and v and Path(v).exists() and not Path(v).is_dir():
            raise ConfigError(f"{where}: key '{key}': {v} is a file, not a folder")


def load_stage_config(
    cls: type[T],
    section: str,
    config_path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] | dict[str, Any] = (),
) -> T:
    """Load ``[section]`` (plus matching ``[common]`` keys) of a TOML file, apply overrides.

    The file as a whole is checked too: unknown sections and ``[common]`` keys are errors, and
    so are values that disagree between sections (:func:`check_agreement`).
    """
    values: dict[str, Any] = {}
    where = section
    fields = set(_field_types(cls))
    accepted = fields | set(_renamed(cls))
    if config_path is not None:
        data = read_toml(config_path)
        where = f"{config_path} [{section}]"
        check_file(data, config_path, section, accepted)
        values.update({k: v for k, v in data.get("common", {}).items() if k in accepted})
        values = _apply_renames(cls, values, f"{config_path} [common]")
        values.update(_apply_renames(cls, data.get(section, {}), where))
        check_agreement(config_path, data)
    if overrides:
        ov = overrides if isinstance(overrides, dict) else parse_overrides(list(overrides))
        unknown = sorted(set(ov) - accepted)
        if unknown:
            raise ConfigError(
                f"override(s) {', '.join(unknown)} not known to [{section}]; "
                f"valid keys are: {', '.join(sorted(fields))}"
            )
        values.update(_apply_renames(cls, ov, f"[{section}] override"))
    _check_folders(values, where)
    return build(cls, values, where)


# --------------------------------------------------------------------------------------------
# Values that must agree between sections of one file


def _effective(data: dict[str, Any], section: str, key: str) -> Any:
    """``[section] key`` as the stage would see it: its table, else [common], else the default."""
    table = data.get(section, {})
    if key in table:
        return table[key]
    if key in data.get("common", {}):
        return data["common"][key]
    try:
        cls = section_class(section)
    except ImportError:
        return None
    for f in dataclasses.fields(cls):
        if f.name == key:
            return f.default if f.default is not dataclasses.MISSING else None
    return None


# (key, sections that must agree, why): each pair of those present in a file is compared.
AGREEMENTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("backbone", ("finetune", "extract", "train"),
     "extract loads the backbone finetune trained, and train reads the features extract wrote"),
    ("flow_backbone", ("finetune", "extract", "train"),
     "the flow stream's backbone: the same chain as backbone"),
    ("skeleton_backbone", ("finetune", "extract", "train"),
     "the skeleton stream's backbone: the same chain as backbone"),
    ("segments", ("extract", "train"), "train reads the <segments>seg feature files extract wrote"),
)
# Compared only when [extract] checkpoint = "auto", i.e. extract uses finetune's weights, which
# learnt objects at that scale (and, for the skeleton stream, motion at that frame rate).
CROP_AGREEMENTS = ("crop_size", "short_side", "skeleton_fps")


def check_agreement(config_path: str | Path, data: dict[str, Any] | None = None) -> None:
    """Raise a ConfigError naming both sections when a file's sections disagree on a value
    that must be the same (:data:`AGREEMENTS`; crops when extract uses finetuned weights).

    Only the file is compared: ``key=value`` overrides apply to one stage, and a user who
    overrides one (``make ... BACKBONE=tsm_r50``) overrides every stage the same way.
    """
    data = read_toml(config_path) if data is None else data
    present = [s for s in SECTIONS if isinstance(data.get(s), dict)]
    pairs: list[tuple[str, str, str, str]] = []
    for key, sections, why in AGREEMENTS:
        have = [s for s in sections if s in present]
        pairs += [(key, have[0], s, why) for s in have[1:]]
    if "finetune" in present and "extract" in present:
        ckpt = str(_effective(data, "extract", "checkpoint") or "").strip().lower()
        if ckpt == "auto":
            why = "[extract] checkpoint = 'auto' uses the finetuned weights, learnt at that scale"
            pairs += [(key, "finetune", "extract", why) for key in CROP_AGREEMENTS]
    for key, a, b, why in pairs:
        va, vb = _effective(data, a, key), _effective(data, b, key)
        if va is not None and vb is not None and va != vb:
            raise ConfigError(f"{config_path}: [{a}] {key} = {va!r} but [{b}] {key} = {vb!r}; "
                              f"they must agree ({why})")


def to_dict(cfg: Any) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def to_json(cfg: Any) -> str:
    """The resolved config as JSON, for storing in every artifact."""
    return json.dumps(to_dict(cfg), sort_keys=True, default=str)


def text_cache_dir(cfg: Any) -> str:
    """Where a stage caches text embeddings: its ``text_cache_dir``, or ``<runs_dir>/.text_cache``,
    the one cache ``[train]``, ``[frames]`` and ``[narration]`` share by default."""
    return cfg.text_cache_dir or f"{cfg.runs_dir}/.text_cache"
