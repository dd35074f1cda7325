"""CPR-CLIP's own recipe as train switches (issue 18): step schedule, SGD + Nesterov, the
softmax(10 * GT) KL targets, the authors' pair/triple imagination; the shipped
configs/cpr_clip_paper.toml training all four models on imported features."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, load_stage_config
from pipeline.taxonomy import ERROR_IDS, NUM_CLASSES, is_valid_label_set
from train.config import TrainConfig
from train.data import FeatureRows, epoch_samples, imagine_paper, paper_label_sets
from train.loop import lr_at, make_optimizer
from train.losses import contrastive_kl, softmax_targets

from authors_helpers import make_two_view_store

ROOT = Path(__file__).resolve().parents[2]
PAPER = str(ROOT / "configs" / "cpr_clip_paper.toml")


# --- schedule and optimiser -------------------------------------------------------------------

def test_step_schedule_is_multisteplr_stepped_per_epoch():
    cfg = TrainConfig(epochs=60, lr=0.01, lr_schedule="step", lr_milestones=(20, 40), lr_gamma=0.1)
    # torch's MultiStepLR, stepped once per epoch as CPR-CLIP.py does, is the reference
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[20, 40], gamma=0.1)
    for epoch in range(60):
        want = opt.param_groups[0]["lr"]
        for b, nb in ((0, 7), (3, 7), (6, 7)):  # every batch position inside the epoch
            assert lr_at(cfg, (epoch + b / nb) / cfg.epochs) == pytest.approx(want, rel=1e-12)
        opt.step()
        sched.step()
    assert lr_at(cfg, 19.999 / 60) == pytest.approx(0.01)
    assert lr_at(cfg, 20 / 60) == pytest.approx(0.001)
    assert lr_at(cfg, 45 / 60) == pytest.approx(1e-4)


def test_optimizer_switch():
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer(TrainConfig(optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True,
                                     weight_decay=1e-4), params)
    assert isinstance(sgd, torch.optim.SGD)
    g = sgd.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.01, 0.9, True, 1e-4)
    assert isinstance(make_optimizer(TrainConfig(), params), torch.optim.AdamW)


@pytest.mark.parametrize("overrides,key", [
    (["nesterov=true"], "nesterov"),  # adamw has no Nesterov momentum
    (["optimizer=sgd", "nesterov=true", "momentum=0"], "nesterov"),
    (["lr_milestones=40,20"], "lr_milestones"),
    (["lr_milestones=0,20"], "lr_milestones"),
    (["lr_gamma=0"], "lr_gamma"),
    (["clip_targets=sharp"], "clip_targets"),
    (["imagine_scheme=imaginenet"], "imagine_scheme"),
    (["lr_schedule=steps"], "lr_schedule"),
])
def test_bad_switches_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        load_stage_config(TrainConfig, "train", None, overrides)


# --- the KL targets ---------------------------------------------------------------------------

def _authors_kl_reference(logits: np.ndarray, label_sets: list[tuple[int, ...]]) -> float:
    """CPR-CLIP's loss written out in float64: GT = identity, plus 1 where two samples' label
    sets are equal; p = softmax(10 GT) per row; KLDivLoss(mean over all B*B entries) * B, for
    the logits and their transpose, averaged."""
    b = len(label_sets)
    gt = np.eye(b)
    for j in range(b):
        for k in range(j + 1, b):
            if label_sets[j] == label_sets[k]:
                gt[j, k] = gt[k, j] = 1.0
    p = np.exp(10 * gt) / np.exp(10 * gt).sum(axis=1, keepdims=True)

    def one(lg):
        logq = lg - np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1, keepdims=True)) - lg.max(1, keepdims=True)
        return float((p * (np.log(p) - logq)).mean() * b)

    return (one(logits) + one(logits.T)) / 2


def test_softmax_targets_and_loss_match_the_authors_formula():
    rng = np.random.default_rng(0)
    sets = [(1, 4), (2,), (1, 4), (3, 5, 9), (2,), (6, 11)]
    ids = {s: i for i, s in enumerate(dict.fromkeys(sets))}
    set_ids = torch.tensor([ids[s] for s in sets])
    t = softmax_targets(set_ids, 10.0, torch.float64).numpy()
    same = np.array([[float(a == b) for b in sets] for a in sets])
    np.testing.assert_allclose(t, np.exp(10 * same) / np.exp(10 * same).sum(1, keepdims=True),
                               rtol=1e-6)
    assert t[1, 0] == pytest.approx(1 / (2 * math.exp(10) + 4), rel=1e-5)  # a negative's mass
    logits = rng.standard_normal((6, 6)) * 5
    got = contrastive_kl(torch.tensor(logits, dtype=torch.float64), set_ids, targets="softmax",
                         target_scale=10.0)
    assert got.item() == pytest.approx(_authors_kl_reference(logits, sets), rel=1e-9)
    # and the two target kinds are different losses
    ours = contrastive_kl(torch.tensor(logits), set_ids, targets="normalised")
    assert abs(ours.item() - got.item()) > 1e-6
    with pytest.raises(ValueError, match="normalised, softmax"):
        contrastive_kl(torch.tensor(logits), set_ids, targets="other")


# --- the authors' imagination -----------------------------------------------------------------

def test_paper_label_sets_are_all_pairs_and_triples():
    sets = paper_label_sets()
    assert len(sets) == 78 + 286 == math.comb(13, 2) + math.comb(13, 3)
    assert set(sets) == set(itertools.chain(itertools.combinations(ERROR_IDS, 2),
                                            itertools.combinations(ERROR_IDS, 3)))
    assert (1, 2) in sets and not is_valid_label_set((1, 2))  # impossible ones too, as theirs


def _unit_features(n0: int = 3, per_error: int = 2):
    """Class c's clips are the unit vector e_c (T = 2 identical segments), so a mix's
    coefficients are readable from its coordinates."""
    classes = np.array([0] * n0 + [c for c in ERROR_IDS for _ in range(per_error)])
    x = np.eye(NUM_CLASSES, dtype=np.float32)[classes][:, None, :].repeat(2, axis=1)
    return x, classes


def test_imagine_paper_counts_sets_and_mixing():
    x, classes = _unit_features(n0=3)
    sets = paper_label_sets()
    index = {s: i for i, s in enumerate(sets)}
    feats, sids = imagine_paper(x, classes, index, "segment", np.random.default_rng(0))
    # half of the 78 pairs and half of the 286 triples, n0 = 3 samples each
    assert feats.shape == ((39 + 143) * 3, 2, NUM_CLASSES) and feats.dtype == np.float32
    drawn = [sets[i] for i in sids]
    assert sum(len(s) == 2 for s in set(drawn)) == 39 and sum(len(s) == 3 for s in set(drawn)) == 143
    assert all(drawn.count(s) == 3 for s in set(drawn))
    pair_w, triple_mid = [], []
    for f, s in zip(feats, drawn):
        c = f[0]
        np.testing.assert_array_equal(f[0], f[1])
        assert set(np.flatnonzero(c > 0)) <= set(s) and c.sum() == pytest.approx(1, abs=1e-5)
        w = np.sort(c[list(s)])
        if len(s) == 2:  # w f1 + (1 - w) f2
            pair_w.append(w[0])
        else:  # f1 w/2 + f2 (1 - w) + f3 w/2: two equal coefficients w/2 and one 1 - w
            k = [i for i in range(3) if any(abs(w[i] - w[j]) < 1e-6 for j in range(3) if j != i)]
            assert len(k) >= 2, w
            half = w[k[0]]
            assert np.delete(w, k[:2])[0] == pytest.approx(1 - 2 * half, abs=1e-5)
            triple_mid.append(1 - 2 * half)
    # w ~ U(0, 1): 1 - w is uniform too; the smaller pair weight is uniform on [0, 0.5]
    assert 0.4 < np.mean(triple_mid) < 0.6 and 0.18 < np.mean(pair_w) < 0.32
    # a different epoch draws other halves
    _, sids2 = imagine_paper(x, classes, index, "segment", np.random.default_rng(1))
    assert set(sids2) != set(sids)


def test_imagine_paper_needs_correct_clips_and_every_error():
    x, classes = _unit_features()
    index = {s: i for i, s in enumerate(paper_label_sets())}
    keep = classes != 0
    with pytest.raises(ValueError, match="Correct"):
        imagine_paper(x[keep], classes[keep], index, "mean", np.random.default_rng(0))
    keep = classes != 7
    with pytest.raises(ValueError, match=r"\[7\]"):
        imagine_paper(x[keep], classes[keep], index, "mean", np.random.default_rng(0))


def test_epoch_samples_with_the_paper_scheme_hold_only_imagined_composites():
    x, classes = _unit_features(n0=2)
    n = len(classes)
    rows = FeatureRows(np.array([f"v{i}" for i in range(n)]), np.zeros(n), np.zeros(n),
                       np.eye(NUM_CLASSES, dtype=np.uint8)[classes], x, (NUM_CLASSES,))
    label_sets = [(k,) for k in range(NUM_CLASSES)] + paper_label_sets()
    index = {s: i for i, s in enumerate(label_sets)}
    s = epoch_samples(rows, label_sets, index, seed=0, epoch=3, imagine_n=999, keep_singles=0.0,
                      by_size={2: [0]}, mix="mean", alpha=1.0, num_combos=1, scheme="paper")
    assert len(s.features) == 182 * 2 and set(s.labels.sum(axis=1)) == {2.0, 3.0}
    again = epoch_samples(rows, label_sets, index, seed=0, epoch=3, imagine_n=999, keep_singles=0.0,
                          by_size={2: [0]}, mix="mean", alpha=1.0, num_combos=1, scheme="paper")
    np.testing.assert_array_equal(s.features, again.features)  # (seed, epoch) decide an epoch


# --- the shipped paper config, all four models --------------------------------------------------

def test_paper_config_trains_all_four_models_on_imported_features(tmp_path, capsys):
    from pipeline.cli import main

    feats = tmp_path / "features"
    make_two_view_store(feats, dataset="demo", segments=8, dim=2048, noise=1.0)
    assert main(["export-features", "--config", PAPER, "dataset=demo", "backbone=toy",
                 f"features_dir={feats}", "segments=8", "shape=mean",
                 f"out_dir={tmp_path / 'pkl'}"]) == 0
    # the release's layout: 2048-d rows -> features/cpr_clip/tsn_r50-rgb-1seg.h5
    assert main(["import-features", "--config", PAPER, f"single={tmp_path / 'pkl/TSN_Single_Feat.pkl'}",
                 f"composite={tmp_path / 'pkl/TSN_Composite_Feat.pkl'}",
                 f"features_dir={feats}"]) == 0
    assert (feats / "cpr_clip" / "tsn_r50-rgb-1seg.h5").is_file()
    common = [f"features_dir={feats}", f"runs_dir={tmp_path / 'runs'}"]
    assert main(["train", "--config", PAPER, *common, "text_encoder=test_hash",
                 f"text_cache_dir={tmp_path / 'tc'}", "epochs=4", "lr_milestones=2,3",
                 "hidden_dim=32", "num_threads=1", "val_every=2"]) == 0
    out = capsys.readouterr().out
    for model in ("cpr_clip", "cpr_clip_plus", "bce", "imaginenet_fc"):
        assert f"{model}\t" in out and "finished" in out
        cfg = json.loads((tmp_path / "runs" / model / "config.json").read_text())["config"]
        assert (cfg["optimizer"], cfg["nesterov"], cfg["lr_schedule"], cfg["clip_targets"],
                cfg["imagine_scheme"], cfg["keep_singles"]) == ("sgd", True, "step", "softmax",
                                                               "paper", 0.0)
    rows = [json.loads(ln) for ln in (tmp_path / "runs/cpr_clip/metrics.jsonl").read_text().splitlines()]
    # n0 = Correct's training clips: the export holds 5 takes x 2 views per class, import
    # holds a fifth out as val, 8 remain; 39 pairs + 143 triples, n0 each
    assert {r["train/samples"] for r in rows} == {182 * 8}
    assert [round(r["train/lr"], 6) for r in rows] == [0.01, 0.001, 0.0001, 0.0001]
    assert {round(r["train/logit_scale"], 3) for r in rows} == {14.286}  # not learnt
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert main(["eval", "--config", PAPER, f"runs_dir={tmp_path / 'runs'}",
                 f"report_dir={tmp_path / 'report'}"]) == 0
    m = json.loads((tmp_path / "runs/cpr_clip_plus/metrics.json").read_text())
    assert set(m["heads"]) == {"clip", "bce"}
    assert any("view fusion is skipped" in w for w in m["warnings"])
    assert "take_mean" not in m["heads"]["clip"]["test"]
    assert m["heads"]["clip"]["decisions"]["unit"] == "video"
