"""bupose.core.algorithms.tta and .image: flips, mirroring, averaging, resizing, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bupose.core.algorithms.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    batch_images,
    normalize,
    normalize_images,
)
from bupose.core.algorithms.tta import (
    average_maps,
    bilinear_taps,
    flip_back,
    flip_back_offsets,
    flip_input,
    mirror_points,
    negate_dx,
    resize_maps,
    up_interpolate,
)

FI = [0, 2, 1, 4, 3]  # an involution: 1 <-> 2, 3 <-> 4


def test_flip_input_shift_semantics() -> None:
    x = torch.arange(10, dtype=torch.float32).view(1, 1, 1, 10)
    assert flip_input(x, 3).flatten().tolist() == [6, 5, 4, 3, 2, 1, 0, 2, 1, 0]
    assert flip_input(x).flatten().tolist() == list(range(9, -1, -1))
    assert torch.equal(flip_input(flip_input(x)), x)
    assert x.flatten().tolist() == list(range(10))


def test_flips_are_involutions_and_consistent() -> None:
    torch.manual_seed(0)
    m = torch.randn(2, 5, 6, 7)
    assert torch.equal(flip_back(flip_back(m, FI), FI), m)
    fb = flip_back(m, FI)
    # channel c at column x of the flipped-back map = channel FI[c] at column W-1-x
    for c in range(5):
        assert torch.equal(fb[:, c, :, 2], m[:, FI[c], :, 7 - 1 - 2])
    off = torch.randn(10, 4, 4)
    assert torch.equal(negate_dx(negate_dx(off)), off)
    assert torch.equal(negate_dx(off)[1::2], off[1::2]) and torch.equal(negate_dx(off)[0::2], -off[0::2])
    ob = flip_back_offsets(off, FI)
    assert torch.equal(flip_back_offsets(ob, FI), off)
    assert torch.equal(ob[2 * 1], -off[2 * 2].flip(-1)) and torch.equal(
        ob[2 * 1 + 1], off[2 * 2 + 1].flip(-1)
    )
    pts = np.random.default_rng(0).uniform(0, 30, (4, 5, 3))
    back = mirror_points(mirror_points(pts, 32.0), 32.0)
    np.testing.assert_allclose(back, pts)
    assert mirror_points(pts, 32.0, minus_one=False)[0, 0, 0] == pytest.approx(32.0 - pts[0, 0, 0])
    t = mirror_points(torch.tensor(pts), 32.0)
    assert isinstance(t, torch.Tensor) and float(t[0, 0, 0]) == pytest.approx(31.0 - pts[0, 0, 0])
    with pytest.raises(ValueError, match="2J offset channels"):
        negate_dx(torch.zeros(3, 2, 2))


def test_average_and_resize() -> None:
    a, b = torch.ones(2, 3), torch.full((2, 3), 3.0)
    assert torch.equal(average_maps([a, b]), torch.full((2, 3), 2.0))
    assert torch.equal(average_maps([a, b], [0.2, 0.6]), torch.full((2, 3), 2.0))
    with pytest.raises(ValueError):
        average_maps([])
    x = torch.arange(6, dtype=torch.float32).view(1, 1, 2, 3)
    y = up_interpolate(x, (8, 12))
    assert y.shape == (1, 1, 8, 12) and torch.equal(y[0, 0, 4:, :], y[0, 0, 4:5, :].expand(4, 12))
    assert resize_maps(x, (4, 6)).shape == (1, 1, 4, 6)
    assert torch.equal(resize_maps(x, (4, 6), mode="nearest")[0, 0, ::2, ::2], x[0, 0])


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(("in_len", "out_len"), [(7, 28), (13, 52), (5, 9), (8, 8), (9, 4)])
def test_bilinear_taps_equal_interpolate(align_corners: bool, in_len: int, out_len: int) -> None:
    torch.manual_seed(1)
    v = torch.randn(in_len)
    full = F.interpolate(
        v.view(1, 1, 1, -1), size=[1, out_len], mode="bilinear", align_corners=align_corners
    )[0, 0, 0]
    pos = torch.arange(out_len)
    i0, i1, w0, w1 = bilinear_taps(out_len, in_len, pos, align_corners=align_corners)
    torch.testing.assert_close(w0 * v[i0] + w1 * v[i1], full, rtol=0, atol=1e-6)


def test_normalize_images_matches_to_tensor_normalize() -> None:
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(2)]
    x = normalize_images(imgs)
    assert x.shape == (2, 3, 5, 7) and x.dtype == torch.float32
    mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
    exp = np.stack([((im / 255.0 - mean) / std).transpose(2, 0, 1) for im in imgs])
    np.testing.assert_allclose(x.numpy(), exp, rtol=0, atol=1e-5)
    bgr = [im[:, :, ::-1] for im in imgs]
    torch.testing.assert_close(normalize_images(bgr, input_order="bgr"), x, rtol=0, atol=0)
    raw = normalize_images(imgs, mean=None, std=None)
    torch.testing.assert_close(raw * 255.0, batch_images(imgs).float(), rtol=0, atol=1e-4)
    f = batch_images(imgs).float()
    f_copy = f.clone()
    normalize(f)
    assert torch.equal(f, f_copy), "normalize must not modify a float input in place"
    with pytest.raises(ValueError, match="share one size"):
        batch_images([imgs[0], imgs[0][:4]])
    with pytest.raises(ValueError, match="at least one image"):
        normalize_images([])
