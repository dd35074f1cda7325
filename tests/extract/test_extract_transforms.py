"""Crops, flow stacking and normalisation: shapes and values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.backbones import RGB_MEAN, RGB_STD
from extract.transforms import (center_crop, multiscale_crops, normalize, resize_short,
                                spatial_views, stack_flow, ten_crop, three_crop, to_model_input)


def grid(n=2, h=6, w=10, c=3):
    """Pixel value encodes (row, col): v[y, x] = 10 * y + x (fits uint8 for small frames)."""
    y, x = np.mgrid[:h, :w]
    f = (10 * y + x).astype(np.uint8)
    return np.broadcast_to(f[None, :, :, None], (n, h, w, c)).copy()


def test_center_crop_offsets_like_mmaction2():
    v = center_crop(grid(), 4)
    assert v.shape == (1, 2, 4, 4, 3)
    assert v[0, 0, 0, 0, 0] == 10 * 1 + 3  # top (6-4)//2 = 1, left (10-4)//2 = 3


def test_three_crop_along_long_side():
    v = three_crop(grid(), 6)
    assert v.shape == (3, 2, 6, 6, 3)
    assert [int(v[k, 0, 0, 0, 0]) for k in range(3)] == [0, 4, 2]  # left, right, middle
    tall = np.swapaxes(grid(), 1, 2)  # 10 high, 6 wide
    vt = three_crop(tall, 6)
    assert [int(vt[k, 0, 0, 0, 0]) for k in range(3)] == [0, 4, 2]  # top, bottom, middle (x, y swapped)


def test_ten_crop_corners_centre_and_flips_invert_flow_x():
    f = grid(1, 6, 10, 2)
    v = ten_crop(f, 4, invert_channels=(0,))
    assert v.shape == (10, 1, 4, 4, 2)
    # (y, x) offsets: (0,0), (0,4*1), (4*0,0), ... w_step=(10-4)//4=1, h_step=(6-4)//4=0
    assert [int(v[k, 0, 0, 0, 1]) for k in (0, 2, 4, 6, 8)] == [0, 4, 0, 4, 2]
    np.testing.assert_array_equal(v[1, ..., 1], v[0, :, :, ::-1, 1])  # y channel: mirrored
    np.testing.assert_array_equal(v[1, ..., 0], 255 - v[0, :, :, ::-1, 0])  # x: mirrored, inverted


def test_multiscale_and_resize_short():
    frames = np.random.default_rng(0).integers(0, 255, (3, 120, 160, 3), dtype=np.uint8)
    v = multiscale_crops(frames, 56)
    assert v.shape == (3, 3, 56, 56, 3)
    r = resize_short(frames, 60)
    assert r.shape == (3, 60, 80, 3)
    assert spatial_views(frames, "ten", 112).shape == (10, 3, 112, 112, 3)
    with pytest.raises(ValueError, match="center, three, ten, multiscale"):
        spatial_views(frames, "five", 112)
    with pytest.raises(ValueError, match="larger than the frame"):
        center_crop(frames, 130)


def test_stack_flow_channel_order_is_x1_y1_x2_y2():
    k, t, L, h, w = 1, 2, 5, 3, 3
    views = np.zeros((k, t * L, h, w, 2), np.uint8)
    for i in range(t * L):
        views[:, i, :, :, 0] = 100 + i  # x of flow frame i
        views[:, i, :, :, 1] = 200 + i  # y
    s = stack_flow(views, L)
    assert s.shape == (1, 2, 3, 3, 10)
    assert s[0, 1, 0, 0].tolist() == [105, 205, 106, 206, 107, 207, 108, 208, 109, 209]


def test_normalize_rgb_and_flow_values():
    x = torch.tensor([[124, 116, 104], [255, 0, 7]], dtype=torch.uint8)
    n = normalize(x, RGB_MEAN, RGB_STD)
    want = (np.array([[124, 116, 104], [255, 0, 7]], np.float64) - RGB_MEAN) / RGB_STD
    assert n.dtype == torch.float32 and n.shape == (2, 3)
    np.testing.assert_allclose(n.numpy(), want, atol=1e-5)
    flow = torch.tensor([[0, 128, 255] + [128] * 7], dtype=torch.uint8)
    nf = normalize(flow, (128.0, 128.0), (128.0, 128.0))
    assert nf.shape == (1, 10) and nf[0, :3].tolist() == [-1.0, 0.0, 127 / 128]


def test_to_model_input_layout():
    b, k, t, h, w, c = 2, 3, 4, 5, 5, 3
    v = torch.arange(b * k * t, dtype=torch.uint8).reshape(b, k, t, 1, 1, 1).expand(b, k, t, h, w, c)
    x = to_model_input(v, (0, 0, 0), (1, 1, 1))
    assert x.shape == (b * k * t, c, h, w) and x.dtype == torch.float32
    assert x[:, 0, 0, 0].tolist() == list(range(b * k * t))  # (video, view, segment) order
