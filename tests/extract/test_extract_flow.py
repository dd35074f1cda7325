"""Optical flow: quantisation, lossless storage round trip, computing, rawframe folders."""
from __future__ import annotations

import numpy as np
import pytest

from extract.decoders import DecodeError
from extract.flow import (FLOW_BOUND, FlowVideoWriter, compute_flow_video, dequantize_flow,
                          open_flow, parse_recipe, quantize_flow, read_recipe)
from extract_helpers import write_video

LEVEL = 2 * FLOW_BOUND / 255


def test_quantisation_bounds():
    f = np.array([[-50.0, 50.0], [0.0, -20.0], [20.0, 0.1]], np.float32)
    q = quantize_flow(f)
    assert q.dtype == np.uint8 and q.tolist() == [[0, 255], [128, 0], [255, 128]]
    back = dequantize_flow(q)
    assert np.all(np.abs(back - np.clip(f, -20, 20)) <= LEVEL / 2 + 1e-5)


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_round_trip_through_flow_video_loses_at_most_one_level(tmp_path, decoder):
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 8, (6, 36, 64, 2)).astype(np.float32)  # includes values beyond +-20
    q = quantize_flow(flow)
    w = FlowVideoWriter(tmp_path / "f.mp4", (64, 36), 25.0, comment="test")
    for x in q:
        w.write(x)
    w.close()
    assert not list(tmp_path.glob(".*.tmp"))  # written via tmp + rename
    with open_flow(tmp_path / "f.mp4", decoder) as r:
        assert r.num_frames == 6
        back = r.get(np.arange(6))
    assert back.shape == q.shape
    assert np.abs(back.astype(int) - q.astype(int)).max() <= 1  # storage: at most one level
    err = np.abs(dequantize_flow(back) - np.clip(flow, -FLOW_BOUND, FLOW_BOUND)).max()
    assert err <= LEVEL + 1e-5  # float flow -> stored -> float: within one level


def moving_square(n=10, h=48, w=64, dx=2):
    """A textured square moving right by ``dx`` px/frame over a static textured background."""
    import cv2

    rng = np.random.default_rng(0)
    # Smooth random textures: trackable in x and y, anchoring the background at 0.
    bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w)).astype(np.uint8), (5, 5), 1.5)
    fg = cv2.GaussianBlur(rng.integers(0, 255, (20, 20)).astype(np.uint8), (5, 5), 1.5)
    frames = np.repeat(np.repeat(bg[None, :, :, None], n, 0), 3, 3).copy()
    for i in range(n):
        x0 = 10 + dx * i
        frames[i, 14:34, x0:x0 + 20, :] = fg[:, :, None]
    return frames


@pytest.mark.parametrize("method", ["farneback", "tvl1"])
def test_compute_flow_video_sees_motion(tmp_path, method):
    src = write_video(tmp_path / "sq.mp4", moving_square(), lossless=True)
    dst = tmp_path / "flow" / "sq.mp4"
    n = compute_flow_video(src, dst, method=method, short_side=None)
    assert n == 9 and dst.is_file()
    assert parse_recipe(read_recipe(dst)) == {"method": method, "bound": "20", "short_side": "0"}
    with open_flow(dst) as r:
        f = dequantize_flow(r.get(np.arange(r.num_frames)))
    assert f.shape == (9, 48, 64, 2)
    inside = f[:, 20:28, 22:30]  # well inside the square in every frame pair
    assert inside[..., 0].mean() == pytest.approx(2.0, abs=0.6)  # moves right by 2 px/frame
    assert abs(inside[..., 1].mean()) < 0.5
    assert np.abs(f[:, 40:, 50:]).mean() < 0.3  # static background far from the square


def test_compute_flow_resizes_and_fails_cleanly(tmp_path):
    src = write_video(tmp_path / "sq.mp4", moving_square(n=4), lossless=True)
    n = compute_flow_video(src, tmp_path / "small.mp4", "farneback", short_side=24)
    with open_flow(tmp_path / "small.mp4") as r:
        assert (n, r.size) == (3, (32, 24))
    one = write_video(tmp_path / "one.mp4", moving_square(n=1), lossless=True)
    with pytest.raises(DecodeError, match="fewer than 2 frames"):
        compute_flow_video(one, tmp_path / "x.mp4", "farneback")
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(ValueError, match="farneback, tvl1, dis"):
        compute_flow_video(src, tmp_path / "y.mp4", "lucas")


def test_rawframe_folder(tmp_path):
    import cv2

    rng = np.random.default_rng(1)
    xy = rng.integers(0, 256, (4, 24, 32, 2), dtype=np.uint8)
    xy[..., 0] = 100 + np.arange(4)[:, None, None]  # flat images survive JPEG exactly enough
    xy[..., 1] = 150 + np.arange(4)[:, None, None]
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"x_{i + 1:05d}.jpg"), xy[i, ..., 0], [cv2.IMWRITE_JPEG_QUALITY, 100])
        cv2.imwrite(str(tmp_path / f"y_{i + 1:05d}.jpg"), xy[i, ..., 1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    with open_flow(tmp_path) as r:
        assert r.num_frames == 4 and r.size == (32, 24)
        got = r.get(np.array([3, 0, 3]))
        assert got.shape == (3, 24, 32, 2)
        assert np.abs(got.astype(int) - xy[[3, 0, 3]].astype(int)).max() <= 1
        assert r.get(np.array([1]), resize_short=12).shape == (1, 12, 16, 2)
    (tmp_path / "y_00003.jpg").unlink()
    with open_flow(tmp_path) as r, pytest.raises(DecodeError, match="y_00003.jpg"):
        r.get(np.array([2]))


# ---------------------------------------------------------------------------------------------
# `cprclip flow` records its outputs in <flow_dir>/index.csv and never rewrites the manifest
# (issue 13 part 6); readers get the flow through the manifest loader.

def _flow_cli(manifest, *extra):
    from pathlib import Path

    from pipeline.cli import main

    config = Path(__file__).resolve().parents[2] / "configs" / "synthetic.toml"
    return main(["flow", "--config", str(config), f"manifest={manifest}", "workers=1",
                 "short_side=32", *extra])


def test_flow_leaves_the_manifest_alone_and_the_loader_finds_the_index(tmp_path, capsys):
    from extract_helpers import make_dataset
    from pipeline.manifest import load_manifest, read_flow_index

    m = make_dataset(tmp_path, takes=2, views=1)
    before = m.read_bytes()
    assert _flow_cli(m) == 0
    assert m.read_bytes() == before  # the user's file is not touched
    assert not list(tmp_path.glob("*.tmp")) and not list((tmp_path / "flow").glob(".*"))
    index = read_flow_index(tmp_path / "flow")
    assert sorted(index) == ["t0_v1", "t1_v1"]
    e = index["t0_v1"]
    assert e.flow == (tmp_path / "flow" / "t0_v1.mp4").resolve()
    assert e.source == (tmp_path / "videos" / "t0_v1.mp4").resolve()
    assert parse_recipe(e.recipe) == {"method": "farneback", "bound": "20", "short_side": "32"}
    recs = {r.video_id: r for r in load_manifest(m)}
    assert {v: r.flow for v, r in recs.items()} == {v: index[v].flow for v in index}
    capsys.readouterr()
    assert _flow_cli(m) == 0  # rerun: nothing to do, the index is not rewritten
    assert "0 computed, 2 reused" in capsys.readouterr().out
    # The manifest's own flow wins over the index.
    own = tmp_path / "own.mp4"
    own.write_bytes((tmp_path / "flow" / "t1_v1.mp4").read_bytes())
    m.write_text(m.read_text().replace("t1,1,p2,train,1,", "t1,1,p2,train,1,own.mp4"))
    assert {r.video_id: r.flow for r in load_manifest(m)}["t1_v1"] == own.resolve()
    assert _flow_cli(m) == 0
    assert "0 computed, 1 reused from flow/, 1 already in the manifest" in capsys.readouterr().out


def test_flow_of_a_changed_video_or_recipe_is_computed_again(tmp_path, capsys):
    from extract_helpers import known_frames, make_dataset, write_video
    from pipeline.manifest import load_manifest

    m = make_dataset(tmp_path, takes=2, views=1)
    assert _flow_cli(m) == 0
    old = (tmp_path / "flow" / "t0_v1.mp4").read_bytes()
    # A video replaced after its flow was computed: the loader does not serve the old flow ...
    write_video(tmp_path / "videos" / "t0_v1.mp4", known_frames(20, 36, 48, seed=99),
                lossless=False)
    capsys.readouterr()
    recs = {r.video_id: r for r in load_manifest(m)}
    assert recs["t0_v1"].flow is None and recs["t1_v1"].flow is not None
    assert "the flow of 1 video(s) was computed from an older file (t0_v1)" in \
        capsys.readouterr().err  # the CLI's log handler (set up by the run above) writes there
    # ... and flow computes only that one again.
    assert _flow_cli(m) == 0
    assert "1 computed, 1 reused" in capsys.readouterr().out
    assert (tmp_path / "flow" / "t0_v1.mp4").read_bytes() != old
    assert all(r.flow is not None for r in load_manifest(m))
    # Another recipe computes everything again (the old flow would be mislabelled).
    assert _flow_cli(m, "short_side=24") == 0
    assert "2 computed, 0 reused" in capsys.readouterr().out
    with open_flow(load_manifest(m)[0].flow) as r:
        assert min(r.size) == 24


def test_a_broken_flow_index_is_one_line(tmp_path, capsys):
    from extract_helpers import make_dataset
    from pipeline.manifest import ManifestError, load_manifest

    m = make_dataset(tmp_path, takes=1, views=1)
    (tmp_path / "flow").mkdir()
    index = tmp_path / "flow" / "index.csv"
    for text, want in [
            ("a,b\n", f"{index}: not a flow index"),
            ("video_id,flow,recipe,source,source_size,source_mtime_ns\n"
             "t0_v1,../../etc/passwd,r,x,1,2\n", f"{index}:row 2: '../../etc/passwd' "),
            ("video_id,flow,recipe,source,source_size,source_mtime_ns\n"
             "t0_v1,t0_v1.mp4,r,x,big,2\n", f"{index}:row 2: invalid literal")]:
        index.write_text(text)
        with pytest.raises(ManifestError, match="delete it and rerun 'cprclip flow'") as e:
            load_manifest(m)
        assert want in str(e.value) and "\n" not in str(e.value)
        capsys.readouterr()
        assert _flow_cli(m) == 2
        err = capsys.readouterr().err
        assert want in err and "Traceback" not in err
