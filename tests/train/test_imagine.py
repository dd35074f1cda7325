"""Composite imagination: valid label sets, convex mixing, per-epoch determinism."""
import numpy as np
import pytest

from pipeline.taxonomy import NUM_CLASSES, is_valid_label_set
from train.data import FeatureRows, epoch_samples, imaginable_sets, imagine
from train.prompts import training_label_sets


def _one_hot_clips(per_class=3, t=2, classes=range(1, NUM_CLASSES)):
    """Clip features that identify their class: class k -> e_k in every segment, plus clip index."""
    feats, cls = [], []
    for k in classes:
        for j in range(per_class):
            x = np.zeros((t, NUM_CLASSES + 1), np.float32)
            x[:, k] = 1.0
            x[:, -1] = j  # distinguishes clips of one class
            feats.append(x)
            cls.append(k)
    return np.stack(feats), np.array(cls)


def test_imagined_sets_are_valid_and_mixes_convex():
    feats, cls = _one_hot_clips()
    sets = training_label_sets()
    by_size = imaginable_sets(sets, set(cls.tolist()), (2, 3, 4))
    out, sids = imagine(feats, cls, sets, by_size, 300, "segment", 1.0, np.random.default_rng(0))
    assert out.shape == (300, 2, NUM_CLASSES + 1)
    sizes = set()
    for x, sid in zip(out, sids):
        labels = sets[sid]
        assert is_valid_label_set(labels) and 2 <= len(labels) <= 4
        sizes.add(len(labels))
        w = x[0, :NUM_CLASSES]
        assert set(np.flatnonzero(w > 1e-6)) <= set(labels)  # only its classes contribute
        assert np.isclose(w.sum(), 1.0, atol=1e-5) and (w >= 0).all()  # convex weights
    assert sizes == {2, 3, 4}


def test_only_classes_with_clips_are_imagined():
    feats, cls = _one_hot_clips(classes=[1, 4, 5, 10])
    sets = training_label_sets()
    by_size = imaginable_sets(sets, {1, 4, 5, 10}, (2, 3))
    _, sids = imagine(feats, cls, sets, by_size, 100, "segment", 1.0, np.random.default_rng(1))
    assert all(set(sets[s]) <= {1, 4, 5, 10} for s in sids)
    with pytest.raises(ValueError, match="size"):
        imaginable_sets(sets, {1, 2, 3}, (2,))  # 1, 2, 3 are all hand form: no valid pair


def test_mix_on_mean_repeats_over_segments():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((13 * 2, 3, 5)).astype(np.float32)
    cls = np.repeat(np.arange(1, 14), 2)
    sets = training_label_sets((2,))
    by_size = imaginable_sets(sets, set(range(1, 14)), (2,))
    out, _ = imagine(feats, cls, sets, by_size, 10, "mean", 1.0, np.random.default_rng(0))
    assert np.allclose(out[:, 0], out[:, 1]) and np.allclose(out[:, 0], out[:, 2])
    seg, _ = imagine(feats, cls, sets, by_size, 10, "segment", 1.0, np.random.default_rng(0))
    assert not np.allclose(seg[:, 0], seg[:, 1])
    assert np.allclose(seg.mean(axis=1), out[:, 0], atol=1e-5)  # same draws, same weights


def _rows(n_per_class=2):
    feats, cls = _one_hot_clips(per_class=n_per_class, classes=range(NUM_CLASSES))
    labels = np.eye(NUM_CLASSES, dtype=np.uint8)[cls]
    n = len(cls)
    return FeatureRows(np.array([f"v{i}" for i in range(n)]), np.ones(n, int), np.array(["p"] * n),
                       labels, feats, (feats.shape[-1],))


def test_epoch_samples_deterministic_and_keep_share():
    rows = _rows()
    sets = training_label_sets()
    index = {s: i for i, s in enumerate(sets)}
    by_size = imaginable_sets(sets, set(range(1, 14)), (2, 3, 4))
    kw = dict(imagine_n=20, keep_singles=0.5, by_size=by_size, mix="segment", alpha=1.0, num_combos=8)
    a = epoch_samples(rows, sets, index, seed=3, epoch=1, **kw)
    b = epoch_samples(rows, sets, index, seed=3, epoch=1, **kw)
    c = epoch_samples(rows, sets, index, seed=3, epoch=2, **kw)
    assert np.array_equal(a.features, b.features) and np.array_equal(a.combos, b.combos)
    assert not np.array_equal(a.features, c.features)
    assert len(a.features) == 14 + 20  # half of 28 singles + 20 imagined
    assert ((a.labels.sum(axis=1) == 1).sum()) == 14
    for lab, sid in zip(a.labels, a.set_ids):
        assert tuple(np.flatnonzero(lab)) == sets[sid]
    none = epoch_samples(rows, sets, index, seed=3, epoch=1, **{**kw, "by_size": None})
    assert len(none.features) == 28 and (none.labels.sum(axis=1) == 1).all()
