"""Broken configs, GENERATED per defect class and run through every stage's CLI (the fault
suite of issue 16): each ends in exit code 2 and exactly one error line naming the file and the
section or key, with no traceback, before the stage does any work.

A case applies to the stages whose config has the key it breaks (a [common] key a stage does not
have is another stage's business). Each case is a TOML text, written next to a real manifest.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from fault_media import good, one_error_line, row, write_manifest
from pipeline.cli import main
from pipeline.config import section_class

STAGES = ("synth", "flow", "finetune", "extract", "train", "eval", "predict", "serve")


def _fields(stage: str) -> set[str]:
    return {f.name for f in dataclasses.fields(section_class(stage))}


@dataclasses.dataclass
class Case:
    text: Callable[[Path], str]  # root -> the TOML text
    words: tuple[str, ...]  # what the error line must say besides the file
    needs: str = ""  # a key the stage's config must have for the case to apply
    as_path: bool = False  # --config names the returned text's path itself (no file written)
    name_file: bool = True  # the line names the config file
    only: tuple[str, ...] = ()  # the stages it applies to, when not every stage with `needs`


def _file(root: Path) -> Path:
    f = root / "a_file.txt"
    f.write_text("not a folder\n")
    return f


CASES: dict[str, Case] = {
    "config_is_a_folder": Case(lambda r: str(r), ("is a folder",), as_path=True),
    "config_missing": Case(lambda r: str(r / "nope.toml"), ("not found",), as_path=True),
    "config_binary": Case(lambda r: "\x00\x01\xff\xfe" * 50, ("not valid TOML",)),
    "config_latin1": Case(lambda r: "[common]\ndataset = \"caf\xe9\"\n", ("not valid TOML",)),
    "unknown_section": Case(lambda r: "[trian]\nepochs = 3\n", ("trian", "valid")),
    "misspelt_common_key": Case(lambda r: "[common]\nfeaturs_dir = \"x\"\n",
                                ("featurs_dir", "features_dir")),
    "common_not_a_table": Case(lambda r: "common = 3\n", ("common",)),
    "section_not_a_table": Case(lambda r: "{stage} = \"fast\"\n", ("{stage}",)),
    "nan_seed": Case(lambda r: "[common]\nseed = nan\n", ("seed",), needs="seed"),
    "list_for_a_name": Case(lambda r: "[common]\ndataset = [\"a\", \"b\"]\n", ("dataset",),
                            needs="dataset"),
    "features_dir_is_a_file": Case(lambda r: f"[common]\nfeatures_dir = \"{_file(r)}\"\n",
                                   ("features_dir", "is a file"), needs="features_dir"),
    "runs_dir_is_a_file": Case(lambda r: f"[common]\nruns_dir = \"{_file(r)}\"\n",
                               ("runs_dir", "is a file"), needs="runs_dir"),
    "checkpoint_template_unknown_field": Case(
        lambda r: "[extract]\ncheckpoint = \"/w/{stream}.pth\"\n",
        ("[extract] key 'checkpoint'", "{stream}"), needs="checkpoint", name_file=False),
    "checkpoint_template_lone_brace": Case(
        lambda r: "[extract]\ncheckpoint = \"/w/{modality.pth\"\n",
        ("[extract] key 'checkpoint'",), needs="checkpoint", name_file=False),
    # torch.manual_seed overflowed (a traceback at the first video); numpy refuses negatives
    "seed_beyond_64_bits": Case(lambda r: "[common]\nseed = 99999999999999999999\n",
                                ("key 'seed'",), needs="seed", name_file=False),
    "seed_negative": Case(lambda r: "[common]\nseed = -1\n", ("key 'seed'",), needs="seed",
                          name_file=False),
    # names features/<dataset>/ (data/, finetuned/): "../x" wrote beside the folder, "" into it
    "dataset_with_a_separator": Case(lambda r: "[common]\ndataset = \"../elsewhere\"\n",
                                     ("key 'dataset'", "separator"), needs="dataset",
                                     name_file=False),
    "dataset_empty": Case(lambda r: "[common]\ndataset = \"\"\n", ("key 'dataset'", "empty"),
                          needs="dataset", name_file=False),
    # names runs/<run_name>/: "../../x" wrote outside runs_dir
    "run_name_leaves_runs_dir": Case(lambda r: "[train]\nrun_name = \"../../x\"\n",
                                     ("key 'run_name'", "separator"), name_file=False,
                                     only=("train",)),
}


def _applies(case: Case, stage: str) -> bool:
    if case.only:
        return stage in case.only
    if case.needs == "checkpoint":
        return stage == "extract"
    return not case.needs or case.needs in _fields(stage)


PAIRS = [(c, s) for c in sorted(CASES) for s in STAGES if _applies(CASES[c], s)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cfg")
    good(root / "videos" / "a.mp4", n=10)
    write_manifest(root / "manifest.csv", [row("a", "videos/a.mp4")])
    return {"root": root, "video": root / "videos" / "a.mp4"}


@pytest.mark.parametrize("case,stage", PAIRS)
def test_a_broken_config_is_one_line_before_any_work(dataset, tmp_path, capsys, monkeypatch,
                                                     case, stage):
    monkeypatch.chdir(tmp_path)  # relative defaults (features/, runs/) land here, if anywhere
    c = CASES[case]
    text = c.text(tmp_path).replace("{stage}", stage)
    if c.as_path:
        cfg = text
    else:
        cfg = tmp_path / "broken.toml"
        cfg.write_bytes(text.encode("latin-1") if case == "config_latin1" else
                        text.encode("utf-8", "surrogateescape"))
    argv = [stage, "--config", str(cfg)]
    if stage == "predict":
        argv = ["predict", str(dataset["video"]), "--config", str(cfg)]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, f"{stage} {case}: rc {rc}\n{err[-2000:]}"
    words = [w.replace("{stage}", stage) for w in c.words]
    one_error_line(err, str(cfg) if c.name_file else "", *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing was made
