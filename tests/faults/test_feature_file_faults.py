"""Broken feature files, GENERATED per defect class (issue 16, item 6 and the fault suite):
each is put where a finished extraction left its file, then every stage that reads it runs.

For every case and stage: exit code != 0, exactly one error line naming the file (and, for
extract, what to do: delete it and rerun), no traceback, and no lost data: the broken file is
left byte for byte as it was (a stage may refuse it, never delete or overwrite it), and the
trained run is untouched. Before the fix, extract took a file without its ``features`` dataset
as "31 already done" (exit 0) and a truncated one gave an h5py traceback.
"""
from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from fault_media import TINY_EXTRACT, TRAIN, copy_pipe, one_error_line
from pipeline.cli import main
from pipeline.features import shard_dir


def _h5(fn: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        with h5py.File(path, "r+") as f:
            fn(f)
    return edit


def _replace(name: str, make: Callable[[h5py.File], np.ndarray], **kw) -> Callable[[Path], None]:
    def fn(f):
        data = make(f)
        del f[name]
        f.create_dataset(name, data=data, **kw)
    return _h5(fn)


def _cut(fraction: float) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
    return edit


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("a folder where the feature file should be")


def _nan(f):
    x = f["features"][()]
    x[2, 1, 3] = np.nan
    f["features"][...] = x


def _dup(f):
    ids = f["video_id"].asstr()[()].tolist()
    ids[1] = ids[0]
    del f["video_id"]
    f.create_dataset("video_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())


# case -> (how to break the file, text the one error line must contain besides the path)
CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "no_features_dataset": (_h5(lambda f: f.__delitem__("features")), "features"),
    "no_labels_dataset": (_h5(lambda f: f.__delitem__("labels")), "labels"),
    "no_video_id_dataset": (_h5(lambda f: f.__delitem__("video_id")), "video_id"),
    "features_is_a_group": (_h5(lambda f: (f.__delitem__("features"),
                                           f.create_group("features"))), ""),
    "features_2d": (_replace("features", lambda f: f["features"][()][:, 0, :]), "features"),
    "features_fewer_rows": (_replace("features", lambda f: f["features"][()][:-1]), "features"),
    "labels_13_classes": (_replace("labels", lambda f: f["labels"][()][:, :13]), "labels"),
    "labels_as_text": (_replace("labels", lambda f: np.array(["x"] * len(f["labels"]),
                                                             dtype=object),
                                dtype=h5py.string_dtype()), "labels"),
    "duplicate_video_id": (_h5(_dup), "duplicate"),
    "nan_in_a_row": (_h5(_nan), "NaN"),
    "schema_version_0": (_h5(lambda f: f.attrs.__setitem__("schema_version", 0)),
                         "schema_version"),
    "schema_version_missing": (_h5(lambda f: f.attrs.__delitem__("schema_version")),
                               "schema_version"),
    "backbone_attribute_missing": (_h5(lambda f: f.attrs.__delitem__("backbone")), "backbone"),
    "segments_attribute_not_a_number": (_h5(lambda f: f.attrs.__setitem__("segments", "eight")),
                                        "segments"),
    "truncated_to_10pct": (_cut(0.10), ""),
    "truncated_to_50pct": (_cut(0.50), ""),
    "truncated_to_99pct": (_cut(0.99), ""),
    "truncated_to_1kb": (_cut(1024 / 300_000), ""),
    "empty_file": (_bytes(b""), ""),
    "random_bytes": (_bytes(np.random.default_rng(0).integers(0, 256, 40_000, np.uint8)
                            .tobytes()), ""),
    "a_csv_file": (_bytes(b"video_id,features\na,1\n" * 50), ""),
    "a_folder": (_folder, ""),
}
# extract-only: a recipe other than this run's, a damaged shard beside a good file
STAGES = ("extract", "train", "eval")


def _digest(path: Path) -> str:
    if path.is_dir():
        return "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(stage: str, p: dict) -> int:
    if stage == "extract":
        return main(["extract", "--config", str(p["cfg"]), *TINY_EXTRACT, "modalities=rgb"])
    if stage == "train":
        return main(["train", *TRAIN(p["cfg"], "run_name=again")])
    return main(["eval", "--config", str(p["cfg"]), "--run", "cpr_clip_plus"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_feature_file_is_one_line_and_nothing_is_lost(pipe, tmp_path, capsys, case):
    p = copy_pipe(pipe, tmp_path / "copy")
    breaker, words = CASES[case]
    breaker(p["feats"])
    before = _digest(p["feats"])
    ckpt = p["run"] / "checkpoint.safetensors"
    run_before = _digest(ckpt)
    capsys.readouterr()
    for stage in STAGES:
        rc = _run(stage, p)
        err = capsys.readouterr().err
        assert rc != 0, f"{stage} accepted a broken feature file ({case}):\n{err[-2000:]}"
        line = one_error_line(err, str(p["feats"]), words)
        if stage == "extract":
            assert rc == 2 and "delete" in line, line  # says what to do
        assert _digest(p["feats"]) == before, f"{stage} changed the broken file"
    assert _digest(ckpt) == run_before
    assert not (p["root"] / "runs" / "again" / "checkpoint.safetensors").exists()
    assert not list(p["root"].rglob("*.tmp"))


def test_a_damaged_shard_is_named_and_the_good_file_kept(pipe, tmp_path, capsys):
    """A shard left damaged (a bad disk, a copy cut short) beside a good final file."""
    p = copy_pipe(pipe, tmp_path / "copy")
    good_before = _digest(p["feats"])
    shards = shard_dir(p["feats"])
    shards.mkdir()
    bad = shards / "shard-r000-1-1.h5"
    shutil.copyfile(p["feats"], bad)
    _cut(0.5)(bad)
    assert main(["extract", "--config", str(p["cfg"]), *TINY_EXTRACT, "modalities=rgb"]) == 2
    line = one_error_line(capsys.readouterr().err, str(bad), "delete")
    assert str(p["feats"]) + " " not in line  # the good file is not blamed
    assert _digest(p["feats"]) == good_before and bad.exists()


def test_a_file_of_another_recipe_is_refused_not_mixed(pipe, tmp_path, capsys):
    p = copy_pipe(pipe, tmp_path / "copy")
    _h5(lambda f: f.attrs.__setitem__("crops", "ten crops"))(p["feats"])
    before = _digest(p["feats"])
    assert main(["extract", "--config", str(p["cfg"]), *TINY_EXTRACT, "modalities=rgb"]) == 2
    one_error_line(capsys.readouterr().err, str(p["feats"]), "existing features were made with "
                   "crops='ten crops'", "delete")
    assert _digest(p["feats"]) == before
