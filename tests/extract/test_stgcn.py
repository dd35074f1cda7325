"""ST-GCN (extract/stgcn.py): the graph and its partitions, shapes, strides, edge importance."""
import numpy as np
import pytest
import torch

from extract.backbones import BACKBONES, build_recognizer
from extract.stgcn import (PAPER_CHANNELS, STGCN, hop_distances, normalized_adjacency,
                           spatial_partitions)
from pipeline.skeleton import BONES, KEYPOINTS, NUM_KEYPOINTS


def test_hop_distances_on_a_chain():
    d = hop_distances(4, ((0, 1), (1, 2), (2, 3)))
    assert d.tolist() == [[0, 1, 2, 3], [1, 0, 1, 2], [2, 1, 0, 1], [3, 2, 1, 0]]
    assert np.isinf(hop_distances(3, ((0, 1),))[0, 2])


def test_partitions_sum_to_the_normalised_adjacency():
    a = spatial_partitions()
    assert a.shape == (3, NUM_KEYPOINTS, NUM_KEYPOINTS) and a.dtype == np.float32
    full = normalized_adjacency(NUM_KEYPOINTS, BONES)
    np.testing.assert_allclose(a.sum(axis=0), full, atol=1e-6)
    np.testing.assert_allclose(full.sum(axis=0), 1.0, atol=1e-9)  # each node averages
    # no entry in two partitions; every bone appears in both directions
    assert ((a > 0).sum(axis=0) <= 1).all()
    for i, j in BONES:
        assert full[i, j] > 0 and full[j, i] > 0
    # by hand: a wrist's neighbours are its elbow (closer to the shoulders: centripetal) and
    # its three hand points (farther: centrifugal); itself is the root
    w, e = KEYPOINTS.index("left_wrist"), KEYPOINTS.index("left_elbow")
    hand = [KEYPOINTS.index(f"left_{p}") for p in ("index_mcp", "pinky_mcp", "middle_tip")]
    assert a[0, w, w] == pytest.approx(1 / 5) and a[1, e, w] == pytest.approx(1 / 5)
    for h in hand:
        assert a[2, h, w] == pytest.approx(1 / 5) and a[1, w, h] == pytest.approx(1 / 2)
    # the two shoulders are the centre: each is in the other's root group
    ls, rs = KEYPOINTS.index("left_shoulder"), KEYPOINTS.index("right_shoulder")
    assert a[0, ls, rs] > 0 and a[0, rs, ls] > 0
    # centripetal one way is centrifugal the other way
    np.testing.assert_array_equal(a[1] > 0, (a[2] > 0).T)


def test_forward_shapes_and_strides():
    torch.manual_seed(0)
    m = STGCN(14, channels=(8, 8, 16, 16, 32)).eval()
    x = torch.randn(2, 3, 41, NUM_KEYPOINTS)
    assert m(x).shape == (2, 14)
    fmap = m.feature_map(x)
    assert fmap.shape == (2, 32, 11, NUM_KEYPOINTS)  # two strides of 2: ceil(41 / 4)
    f = m.segment_features(x, 8)
    assert f.shape == (2, 8, 32)
    # segment features are the joint-mean feature map averaged over 8 windows of time
    ref = torch.nn.functional.adaptive_avg_pool1d(fmap.mean(3), 8).transpose(1, 2)
    torch.testing.assert_close(f, ref)
    # the paper's layout: strides where the width grows (blocks 5 and 8), a residual from block 2
    paper = STGCN(14)
    strides = [b.tcn[2].stride[0] for b in paper.blocks]
    assert strides == [1, 1, 1, 1, 2, 1, 1, 2, 1, 1] and len(PAPER_CHANNELS) == 10
    assert paper.blocks[0].residual is None and paper.feature_dim == 256
    assert paper.blocks[0].tcn[2].kernel_size == (9, 1)
    assert paper.data_bn.num_features == 3 * NUM_KEYPOINTS


def test_edge_importance_learns_and_missing_joints_matter():
    torch.manual_seed(0)
    m = STGCN(4, channels=(8, 16))
    x = torch.randn(4, 3, 16, NUM_KEYPOINTS)
    torch.nn.functional.cross_entropy(m(x), torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.edge_importance)
    m.eval()
    with torch.no_grad():  # a joint's input reaches the output through the graph
        y = x.clone()
        y[:, :, :, KEYPOINTS.index("left_wrist")] = 0
        assert not torch.allclose(m(x), m(y))


def test_backbone_rows():
    for name, dim in (("stgcn", 256), ("stgcn_lite", 64)):
        spec = BACKBONES[name]
        assert spec.modalities == ("skeleton",) and spec.feature_dim == dim
        m = build_recognizer(name, "skeleton", num_classes=14, seed=3)
        assert isinstance(m, STGCN) and m.feature_dim == dim
        m2 = build_recognizer(name, "skeleton", num_classes=14, seed=3)
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                     m2.state_dict().values()))
    with pytest.raises(ValueError, match="does not take modality"):
        build_recognizer("stgcn", "rgb")
