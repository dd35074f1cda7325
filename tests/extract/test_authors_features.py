"""The authors' feature pickles <-> the store (issue 18): export, import, the val hold-out, row
ids, provenance, and one-line errors for each kind of bad input file."""
from __future__ import annotations

import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from extract.authors_features import (AuthorsFormatError, ExportFeaturesConfig,
                                       ImportFeaturesConfig, export_features, import_features,
                                       read_authors_file, row_ids, val_holdout)
from pipeline.config import ConfigError
from pipeline.features import (UNKNOWN, UNKNOWN_VIEW, FeatureRecipe, FeatureSet, feature_path,
                               read_features, takes_known, write_feature_set)
from pipeline.pickle_safe import UnsafePickleError
from pipeline.provenance import sha256_file
from pipeline.taxonomy import NUM_CLASSES, composite_label_sets, multi_hot

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "synthetic.toml")


def make_store(features_dir: Path, *, segments: int = 4, dim: int = 6, per_class: int = 5,
               n_val: int = 1, n_test: int = 20, dataset: str = "orig", backbone: str = "toy",
               modality: str = "rgb", seed: int = 0) -> Path:
    """One store file: ``per_class`` singles per class (the first ``n_val`` of each -> val) and
    ``n_test`` composites, with takes of two views and two participants."""
    rng = np.random.default_rng(seed)
    ids, splits, labels = [], [], []
    for k in range(NUM_CLASSES):
        for j in range(per_class):
            ids.append(f"s{k:02d}_{j}")
            splits.append("val" if j < n_val else "train")
            labels.append(multi_hot((k,)))
    comps = composite_label_sets()
    for j in range(n_test):
        ids.append(f"c{j:03d}")
        splits.append("test")
        labels.append(multi_hot(comps[int(rng.integers(len(comps)))]))
    n = len(ids)
    rows = FeatureSet(feature_path(features_dir, dataset, backbone, modality, segments),
                      np.array(ids), np.array([f"t{i // 2}" for i in range(n)]),
                      np.array([1 + i % 2 for i in range(n)]), np.array([f"p{i % 2}" for i in range(n)]),
                      np.array(splits), np.stack(labels),
                      rng.standard_normal((n, segments, dim)).astype(np.float32))
    recipe = FeatureRecipe(backbone=backbone, modality=modality, segments=segments, feature_dim=dim)
    return write_feature_set(rows.path, rows, recipe)


def _export(tmp_path, **kw) -> dict:
    base = dict(dataset="orig", features_dir=str(tmp_path / "f"), backbone="toy", segments=4,
                out_dir=str(tmp_path / "exp"))
    return export_features(ExportFeaturesConfig(**{**base, **kw}))[0]


def _import(tmp_path, ex: dict, **kw):
    base = dict(single=ex["single"], composite=ex["composite"], dataset="back",
                features_dir=str(tmp_path / "f"), backbone="toy")
    return import_features(ImportFeaturesConfig(**{**base, **kw}))


@pytest.mark.parametrize("shape", ["segments", "mean"])
def test_export_then_import_gives_the_rows_back(tmp_path, shape):
    src = read_features(make_store(tmp_path / "f"))
    ex = _export(tmp_path, shape=shape)
    assert ex["values_per_row"] == (4 * 6 if shape == "segments" else 6)
    out, summary = _import(tmp_path, ex, segments=4 if shape == "segments" else 0, val_fraction=0.25)
    back = read_features(out)
    t = 4 if shape == "segments" else 1
    assert out.name == f"toy-rgb-{t}seg.h5" and back.features.shape[1:] == (t, 6)
    # composites, in store order, are the test split with their labels and features
    want = src.where_split("test")
    got = back.where_split("test")
    got = got.select(np.argsort(got.video_id))  # ids carry the row index: same order as exported
    np.testing.assert_array_equal(got.labels, want.labels)
    want_x = want.features if shape == "segments" else want.features.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(got.features, want_x, rtol=1e-6)
    # every single comes back, as train or val; 14 x 5 singles, a quarter of 5 rounds to 1 per class
    singles = back.select(back.split != "test")
    assert len(singles) == NUM_CLASSES * 5 and summary["val"] == NUM_CLASSES
    assert (singles.labels.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(np.bincount(singles.labels.argmax(1)[singles.split == "val"],
                                              minlength=NUM_CLASSES), np.ones(NUM_CLASSES))
    # nothing about takes, views, people survives the format
    assert set(back.take_id) == {UNKNOWN} and set(back.participant) == {UNKNOWN}
    assert set(back.view.tolist()) == {UNKNOWN_VIEW} and not takes_known(back.take_id)
    # provenance: the source files' sha256 and the hold-out rule
    r = back.recipe
    assert r.backbone == "toy" and r.modality == "rgb" and r.segments == t and not r.random_init
    files = r.extra["source_files"]
    assert sha256_file(ex["single"]) in files and sha256_file(ex["composite"]) in files
    assert "default_rng(0)" in r.extra["val_holdout"]


def test_exported_files_read_the_way_the_authors_read_them(tmp_path):
    """Plain pickle, label[0][0], label.reshape(-1), a 16384-d row reshaped (8, 2048); the
    arrays are named by numpy.core (numpy 1 and 2 both load that)."""
    make_store(tmp_path / "f", segments=8, dim=2048, per_class=2, n_test=4)
    ex = _export(tmp_path, segments=8, shape="segments")
    single = pickle.loads(Path(ex["single"]).read_bytes())
    comp = pickle.loads(Path(ex["composite"]).read_bytes())
    # the train split then the val split, each in store order (one of each per class here)
    assert [int(item[0][0][0]) for item in single] == list(range(NUM_CLASSES)) * 2
    assert all(item[1].shape == (8 * 2048,) and item[1].dtype == np.float32 for item in single)
    assert all(item[0].reshape(-1).shape == (NUM_CLASSES,) and item[0].sum() >= 2 for item in comp)
    assert single[0][1].reshape(8, 2048).mean(0).shape == (2048,)
    names = [arg for op, arg, _ in pickletools.genops(Path(ex["single"]).read_bytes())
             if op.name == "GLOBAL"]
    assert names and all(not a.startswith("numpy._core") for a in names), names
    assert "numpy.core.multiarray _reconstruct" in names


@pytest.mark.parametrize("width,expect_t,expect_d", [(16384, 8, 2048), (2048, 1, 2048),
                                                     (1024, 1, 1024)])
def test_segments_follow_the_width(tmp_path, width, expect_t, expect_d):
    rng = np.random.default_rng(1)
    single = [(np.array([[k]]), rng.standard_normal(width).astype(np.float32))
              for k in range(NUM_CLASSES) for _ in range(2)]
    comp = [(multi_hot((1, 4)).astype(np.float32), rng.standard_normal(width).astype(np.float32))]
    (tmp_path / "S.pkl").write_bytes(pickle.dumps(single))
    (tmp_path / "C.pkl").write_bytes(pickle.dumps(comp))
    out, s = import_features(ImportFeaturesConfig(single=str(tmp_path / "S.pkl"),
                                                  composite=str(tmp_path / "C.pkl"),
                                                  dataset="d", backbone="tsn_r50",
                                                  features_dir=str(tmp_path / "f")))
    assert out.name == f"tsn_r50-rgb-{expect_t}seg.h5" and (s["segments"], s["dim"]) == (expect_t, expect_d)
    back = read_features(out)
    row = back.select(back.video_id == "S-00003")
    np.testing.assert_array_equal(row.features.reshape(-1), single[3][1])


def test_val_holdout_per_class_and_seeded():
    classes = np.repeat(np.arange(4), [10, 5, 2, 1])
    v = val_holdout(classes, 0.2, seed=3)
    # round(0.2 * n) per class, capped at n - 1: 2, 1, 0 (0.4 rounds down), 0 (cap)
    assert [int(v[classes == c].sum()) for c in range(4)] == [2, 1, 0, 0]
    np.testing.assert_array_equal(v, val_holdout(classes, 0.2, seed=3))
    assert any(not np.array_equal(v, val_holdout(classes, 0.2, seed=s)) for s in range(4, 10))
    assert not val_holdout(classes, 0.0, seed=3).any()
    assert [int(val_holdout(classes, 0.99, 0)[classes == c].sum()) for c in range(4)] == [9, 4, 1, 0]


def test_row_ids_from_file_and_index():
    a, b = row_ids(Path("x/TSN_Single_Feat.pkl"), Path("y/TSN Composite.pkl"), 2, 3)
    assert a == ["TSN_Single_Feat-00000", "TSN_Single_Feat-00001"]
    assert b[-1] == "TSN_Composite-00002"
    a, b = row_ids(Path("x/f.pkl"), Path("y/f.pkl"), 1, 1)
    assert a == ["f-single-00000"] and b == ["f-composite-00000"]


def test_existing_file_needs_overwrite(tmp_path):
    make_store(tmp_path / "f")
    ex = _export(tmp_path)
    _import(tmp_path, ex)
    with pytest.raises(AuthorsFormatError, match="overwrite=true"):
        _import(tmp_path, ex)
    _import(tmp_path, ex, overwrite=True, seed=1)


# --- bad input files, one case per kind of fault -------------------------------------------

def _good_pairs(kind):
    x = np.ones(2048, np.float32)
    if kind == "single":
        return [(np.array([[k]]), x) for k in range(NUM_CLASSES)]
    return [(multi_hot((1, 4)).astype(np.float32), x)]


FAULTS = {
    "truncated": ("single", None, "not a complete pickle"),
    "not a list": ("single", {"a": np.zeros(3)}, "list of (label, feature) pairs"),
    "empty list": ("single", [], "empty"),
    "not a pair": ("single", [(np.array([[1]]),)], "row 0: expected a (label, feature) pair"),
    "class out of range": ("single", [(np.array([[14]]), np.ones(2048, np.float32))], "row 0: class id 14"),
    "two class ids": ("single", [(np.array([[1, 2]]), np.ones(2048, np.float32))], "row 0: a single-class label"),
    "fractional id": ("single", [(np.array([[1.5]]), np.ones(2048, np.float32))], "row 0: class id 1.5"),
    "label of 13": ("composite", [(np.ones(13), np.ones(2048, np.float32))], "row 0: a composite label"),
    "non-binary label": ("composite", [(np.full(14, 0.5), np.ones(2048, np.float32))], "other than 0 and 1"),
    "no class set": ("composite", [(np.zeros(14), np.ones(2048, np.float32))], "no class set"),
    "2-D feature": ("single", [(np.array([[1]]), np.ones((8, 2048), np.float32))], "row 0: a feature is a 1-D"),
    "string feature": ("single", [(np.array([[1]]), "abc")], "row 0: a feature is a 1-D"),
    "ragged rows": ("single", [(np.array([[1]]), np.ones(2048, np.float32)),
                               (np.array([[2]]), np.ones(2047, np.float32))], "row 1: feature has 2047"),
    "NaN": ("single", [(np.array([[1]]), np.full(2048, np.nan, np.float32))], "row 0: feature contains NaN"),
    "object array": ("single", [(np.array([[1]]), np.array([1.0, None], dtype=object))], "object array"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_bad_files_give_one_line_naming_the_file(tmp_path, fault):
    kind, content, match = FAULTS[fault]
    path = tmp_path / f"{kind}.pkl"
    data = pickle.dumps(_good_pairs(kind) if content is None else content, protocol=4)
    path.write_bytes(data[: len(data) // 2] if fault == "truncated" else data)
    with pytest.raises((AuthorsFormatError, UnsafePickleError)) as e:
        read_authors_file(path, kind)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and match in msg, msg


def test_widths_of_the_two_files_must_agree(tmp_path):
    (tmp_path / "S.pkl").write_bytes(pickle.dumps(_good_pairs("single")))
    (tmp_path / "C.pkl").write_bytes(pickle.dumps([(multi_hot((1, 4)), np.ones(1024, np.float32))]))
    cfg = ImportFeaturesConfig(single=str(tmp_path / "S.pkl"), composite=str(tmp_path / "C.pkl"),
                               dataset="d", backbone="b", features_dir=str(tmp_path / "f"))
    with pytest.raises(AuthorsFormatError, match="C.pkl: rows have 1024 values"):
        import_features(cfg)
    (tmp_path / "C2.pkl").write_bytes(pickle.dumps(_good_pairs("composite")))
    with pytest.raises(AuthorsFormatError, match="S.pkl: 2048 values per row do not split into segments=3"):
        import_features(ImportFeaturesConfig(**{**cfg.__dict__, "composite": str(tmp_path / "C2.pkl"),
                                                "segments": 3}))
    assert not (tmp_path / "f").exists()  # nothing written


def test_cli_refuses_code_and_never_runs_it(tmp_path, capsys):
    from pipeline.cli import main

    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "S.pkl").write_bytes(pickle.dumps([(np.array([[1]]), Evil())]))
    (tmp_path / "C.pkl").write_bytes(pickle.dumps(_good_pairs("composite")))
    rc = main(["import-features", "--config", CONFIG, f"single={tmp_path / 'S.pkl'}",
               f"composite={tmp_path / 'C.pkl'}", "dataset=d", "backbone=b",
               f"features_dir={tmp_path / 'f'}"])
    assert rc == 1 and not marker.exists()
    errors = [ln for ln in capsys.readouterr().err.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert f"{tmp_path / 'S.pkl'}: refused to load class" in errors[0] and "open" in errors[0]


def test_cli_round_trip_and_config_errors(tmp_path, capsys):
    from pipeline.cli import main

    make_store(tmp_path / "f")
    f = f"features_dir={tmp_path / 'f'}"
    assert main(["export-features", "--config", CONFIG, "dataset=orig", "backbone=toy",
                 "modalities=rgb", "segments=4", f"out_dir={tmp_path / 'exp'}", f]) == 0
    assert main(["import-features", "--config", CONFIG, f"single={tmp_path / 'exp/TSN_Single_Feat.pkl'}",
                 f"composite={tmp_path / 'exp/TSN_Composite_Feat.pkl'}", "dataset=back",
                 "backbone=toy", f]) == 0
    out = capsys.readouterr().out
    assert "toy-rgb-1seg.h5\ttrain=56\tval=14\ttest=20\tT=1\tD=6" in out
    assert "skips view fusion" in out
    for bad, key in ((["backbone=toy"], "single"), (["single=a", "composite=b", "backbone=toy",
                                                     "dataset=x", "modalities=rgb,flow"], "modalities"),
                     (["single=a", "composite=b", "backbone=t", "dataset=d", "val_fraction=1"], "val_fraction")):
        with pytest.raises(ConfigError, match=key):
            from pipeline.config import load_stage_config

            load_stage_config(ImportFeaturesConfig, "import_features", None, bad)
    assert main(["import-features", "--config", CONFIG, "backbone=toy"]) == 2
