"""Three streams (rgb, flow, skeleton), each file with its own backbone: concat and late fusion in
`cprclip train`, then `cprclip eval` over runs of one stream and of all three."""
import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.config import ConfigError
from pipeline.features import join, read_features
from train.config import TrainConfig
from train.runs import load_run

from tiny_train_features import BACKBONE, DATASET, make_features

DIMS = {"rgb": 16, "flow": 8, "skeleton": 6}
SKELETON = "toy_gcn"  # the skeleton files' own backbone name


@pytest.fixture(scope="module")
def three_streams(tmp_path_factory):
    return make_features(tmp_path_factory.mktemp("features3"), dims=DIMS,
                         backbones={"skeleton": SKELETON}, paired_test=True)


def test_backbones_per_stream():
    cfg = TrainConfig(backbone="tsn_mnv2", skeleton_backbone="stgcn_lite",
                      modalities=("rgb", "flow", "skeleton"))
    assert cfg.backbones == {"rgb": "tsn_mnv2", "flow": "tsn_mnv2", "skeleton": "stgcn_lite"}
    with pytest.raises(ConfigError, match="repeated"):
        TrainConfig(modalities=("skeleton", "skeleton"))


def test_three_streams_concat_and_late_then_eval(three_streams, tmp_path):
    runs = tmp_path / "runs"
    toml = tmp_path / "tiny.toml"
    toml.write_text(f"""
[common]
dataset = "{DATASET}"
features_dir = "{three_streams}"
runs_dir = "{runs}"
seed = 0

[train]
backbone = "{BACKBONE}"
skeleton_backbone = "{SKELETON}"
segments = 4
modalities = ["rgb", "flow", "skeleton"]
models = ["bce"]
text_encoder = "test_hash"
text_cache_dir = "{tmp_path / 'cache'}"
epochs = 12
lr = 5e-3
hidden_dim = 32
val_every = 10
""")
    args = ["train", "--config", str(toml)]
    assert main(args + ["run_name=all3_concat"]) == 0
    assert main(args + ["run_name=all3_late", "fusion=late"]) == 0
    assert main(args + ["run_name=skeleton_only", "modalities=skeleton"]) == 0
    assert main(args + ["run_name=all3_per_view", "view_standardise=skeleton"]) == 0

    rgb, flow, skel = (read_features(three_streams / DATASET / f"{b}-{m}-4seg.h5")
                       for m, b in (("rgb", BACKBONE), ("flow", BACKBONE),
                                    ("skeleton", SKELETON)))
    rgb, skel = join(rgb, skel)
    rgb, flow = join(rgb, flow)
    test = rgb.split == "test"
    feats = {"rgb": rgb.features[test], "flow": flow.features[test],
             "skeleton": skel.features[test]}
    for name, fusion, streams in (("all3_concat", "concat", 1), ("all3_late", "late", 3)):
        run = load_run(runs / name)
        assert run.modalities == ("rgb", "flow", "skeleton")
        assert run.feature_files["skeleton"].name == f"{SKELETON}-skeleton-4seg.h5"
        assert run.model.args.dims == (16, 8, 6) and run.model.args.fusion == fusion
        assert len(run.model.streams) == streams
        s = run.scores(feats)["bce"]
        assert s.shape == (int(test.sum()), 14) and np.isfinite(s).all()
        assert run.record["final_val"]["val/mAP"] > 0.5  # chance is about 1/14
    one = load_run(runs / "skeleton_only")
    assert one.modalities == ("skeleton",) and one.model.args.dims == (6,)
    assert not one.viewnorm and one.prepare(feats, rgb.view[test]) is feats  # nothing to do

    # per-view standardisation: saved with the checkpoint, applied by Run.prepare, recorded
    pv = load_run(runs / "all3_per_view")
    assert pv.viewnorm.modalities == ("skeleton",)
    assert pv.record["data"]["view_standardise"] == {"skeleton": {"views": [1, 2]}}
    train = rgb.split == "train"
    prepared = pv.prepare({"rgb": rgb.features[train], "flow": flow.features[train],
                           "skeleton": skel.features[train]}, rgb.view[train])
    assert prepared["rgb"] is rgb.features[train] or np.array_equal(prepared["rgb"], rgb.features[train])
    for v in (1, 2):  # the training rows of each view: mean 0, sd 1 per dimension
        x = prepared["skeleton"][rgb.view[train] == v].reshape(-1, 6)
        np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-3)
    s = pv.scores(pv.prepare(feats, rgb.view[test]))["bce"]
    assert s.shape == (int(test.sum()), 14) and np.isfinite(s).all()

    report = tmp_path / "report"
    assert main(["eval", "--config", str(toml), f"report_dir={report}"]) == 0
    for name in ("all3_concat", "all3_late", "skeleton_only", "all3_per_view"):
        m = json.loads((runs / name / "metrics.json").read_text())
        assert "bce" in m["heads"]
    text = (report / "report.md").read_text()
    # each run's streams are named in the report, so one stream and all three sit side by side
    assert f"{SKELETON} (skeleton)" in text and f"{BACKBONE} (rgb)" in text
    assert "skeleton_only" in text and "all3_late" in text
