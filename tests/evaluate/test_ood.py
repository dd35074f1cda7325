"""The unsuitable-input check (evaluate.ood): distances against brute force, limits, files."""
import numpy as np
import pytest

from evaluate.ood import OodReference, fit_ood, knn_distance, video_vectors


def test_video_vectors_are_unit_means_and_zero_stays_zero():
    x = np.zeros((3, 4, 5))
    x[0] = 2.0
    x[1, :, 0] = [1, 3, 1, 3]
    v = video_vectors(x)
    np.testing.assert_allclose(np.linalg.norm(v[:2], axis=1), 1.0)
    np.testing.assert_allclose(v[1], [1, 0, 0, 0, 0])
    assert (v[2] == 0).all()


def test_knn_distance_against_brute_force():
    rng = np.random.default_rng(0)
    q = video_vectors(rng.normal(size=(7, 2, 6)))
    r = video_vectors(rng.normal(size=(20, 2, 6)))
    for k in (1, 3):
        got = knn_distance(q, r, k)
        brute = [sorted(1 - qi @ rj for rj in r)[k - 1] for qi in q]
        np.testing.assert_allclose(got, brute, atol=1e-12)
    # leave-one-out: a row is not its own neighbour
    self_d = knn_distance(r, r, 1, exclude_self=True)
    brute = [min(1 - r[i] @ r[j] for j in range(len(r)) if j != i) for i in range(len(r))]
    np.testing.assert_allclose(self_d, brute, atol=1e-12)
    # the zero vector is at distance 1 from every unit vector
    assert knn_distance(np.zeros((1, 6)), r, 1)[0] == pytest.approx(1.0)


def test_fit_flags_far_videos_and_survives_a_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    centre = rng.normal(size=16) + 3  # every "CPR" video points roughly this way

    def videos(n, spread=0.3):
        return {"rgb": centre + spread * rng.normal(size=(n, 4, 16)),
                "flow": -centre + spread * rng.normal(size=(n, 4, 16))}

    train, val = videos(60), videos(40)
    ref, val_ratio = fit_ood(train, val, k=1, quantile=0.95, slack=1.2)
    assert ref.limit_source == "val" and set(ref.limits) == {"rgb", "flow"}
    d = ref.distances(val)
    for m in ("rgb", "flow"):  # each limit is the quantile of its own val distances
        assert ref.limits[m] == pytest.approx(np.quantile(d[m], 0.95))
    np.testing.assert_allclose(val_ratio, np.maximum(d["rgb"] / ref.limits["rgb"],
                                                     d["flow"] / ref.limits["flow"]))
    odd = videos(3)
    odd["flow"][0] = 0.0  # no motion at all (a still, black video)
    odd["rgb"][1] = rng.normal(size=(4, 16)) * 5  # something else entirely
    ratios = ref.ratios(odd)
    assert ref.unsuitable(ratios).tolist() == [True, True, False]
    ref.save(tmp_path / "ood.npz")
    back = OodReference.load(tmp_path / "ood.npz")
    assert back.summary() == ref.summary()
    np.testing.assert_allclose(back.ratios(odd), ratios, rtol=1e-5)
    with pytest.raises(KeyError, match="flow"):
        ref.ratios({"rgb": odd["rgb"]})


def test_without_val_the_limits_come_from_training_leave_one_out():
    rng = np.random.default_rng(2)
    train = {"rgb": rng.normal(size=(30, 2, 8)) + 2}
    ref, val_ratio = fit_ood(train, None, k=2, quantile=0.9)
    assert ref.limit_source == "train" and len(val_ratio) == 0
    with pytest.raises(ValueError, match="too few"):
        fit_ood({"rgb": train["rgb"][:1]}, None)
