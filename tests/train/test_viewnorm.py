"""Per-camera standardisation (train/viewnorm.py): statistics per view from training rows,
applied to the named streams only, unknown views on the pooled statistics, saved as tensors."""
import numpy as np
import pytest

from train import checkpoint as ckpt
from train.viewnorm import ViewNorm


def _rows(rng, n=60):
    views = np.tile([1, 2, 4], n // 3)
    scale = np.where(views == 4, 0.5, 2.0)[:, None, None]  # the same motion, other pixels
    skel = scale * (3.0 + rng.standard_normal((n, 3, 5)))
    rgb = rng.standard_normal((n, 3, 4))
    return {"rgb": rgb.astype(np.float32), "skeleton": skel.astype(np.float32)}, views


def test_each_view_is_put_on_one_scale_and_other_streams_pass():
    rng = np.random.default_rng(0)
    feats, views = _rows(rng)
    norm = ViewNorm.fit(feats, views, ("skeleton",))
    assert norm.modalities == ("skeleton",) and norm.describe() == {"skeleton": {"views": [1, 2, 4]}}
    out = norm.apply(feats, views)
    assert out["rgb"] is feats["rgb"]
    for v in (1, 2, 4):
        x = out["skeleton"][views == v].reshape(-1, 5).astype(np.float64)
        np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-4)
    assert norm.unknown_views == ()
    # a camera the training rows never had: the pooled statistics, and it is reported
    one = {"rgb": feats["rgb"][:1], "skeleton": feats["skeleton"][:1]}
    got = norm.apply(one, [3])
    flat = feats["skeleton"].reshape(-1, 5).astype(np.float64)
    want = (one["skeleton"] - flat.mean(axis=0)) / flat.std(axis=0)
    np.testing.assert_allclose(got["skeleton"], want, rtol=1e-4, atol=1e-4)
    assert norm.unknown_views == (3,)


def test_an_empty_norm_changes_nothing_and_errors_name_the_stream():
    rng = np.random.default_rng(1)
    feats, views = _rows(rng)
    assert ViewNorm().apply(feats, views) is feats
    with pytest.raises(KeyError, match="flow"):
        ViewNorm.fit(feats, views, ("flow",))
    norm = ViewNorm.fit(feats, views, ("skeleton",))
    with pytest.raises(ValueError, match="skeleton: 60 rows but 2 view ids"):
        norm.apply(feats, [1, 2])
    with pytest.raises(ValueError, match="D=3"):
        norm.apply({"skeleton": feats["skeleton"][..., :3]}, views)


def test_the_statistics_survive_the_checkpoint(tmp_path):
    rng = np.random.default_rng(2)
    feats, views = _rows(rng)
    norm = ViewNorm.fit(feats, views, ("skeleton", "rgb"))
    ckpt.save(tmp_path / "c.safetensors", norm.to_tensors(), {"model_name": "x"})
    tensors, _ = ckpt.load(tmp_path / "c.safetensors")
    back = ViewNorm.from_tensors(tensors)
    assert sorted(back.modalities) == ["rgb", "skeleton"]
    a, b = norm.apply(feats, views), back.apply(feats, views)
    for m in ("rgb", "skeleton"):
        np.testing.assert_array_equal(a[m], b[m])
    assert not ViewNorm.from_tensors({})
    broken = {k: v for k, v in tensors.items() if not k.endswith("rgb.std")}
    with pytest.raises(ValueError, match="rgb are incomplete"):
        ViewNorm.from_tensors(broken)
