"""bupose.core.algorithms.geometry: resize rule, affines and their inverses, warps."""

from __future__ import annotations

import numpy as np
import pytest

from bupose.core.algorithms.geometry import (
    WarpMeta,
    apply_affine,
    back_project,
    center_scale_affine,
    crop_affine,
    multi_scale_size,
    pad_to_multiple,
    round_to_multiple,
    short_side_resize_size,
    warp_affine,
    warp_image,
    warp_mask,
)


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m[:2], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("rotation", [0.0, 17.0, -40.0])
def test_center_scale_affine_and_inverse_round_trip(rotation: float) -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        c = rng.uniform(50, 400, 2)
        s = rng.uniform(0.5, 3.0, 2)
        size = (int(rng.integers(64, 700)), int(rng.integers(64, 700)))
        fwd = center_scale_affine(c, s, size, rotation=rotation)
        inv = center_scale_affine(c, s, size, rotation=rotation, inverse=True)
        np.testing.assert_allclose(_h(fwd) @ _h(inv), np.eye(3), atol=1e-4)
        # the centre goes to the middle of the output, scale[0] * 200 px span the output width
        np.testing.assert_allclose(apply_affine(c, fwd), [size[0] / 2, size[1] / 2], atol=1e-3)
        assert abs(np.linalg.det(fwd[:, :2])) == pytest.approx((size[0] / (s[0] * 200)) ** 2, rel=1e-4)


def test_back_project_inverts_the_forward_affine() -> None:
    meta = multi_scale_size((300, 420), 256)
    pts = np.random.default_rng(1).uniform(0, 250, (5, 17, 2))
    fwd = center_scale_affine(meta.center, meta.scale, meta.size_wh)
    inp = apply_affine(pts, fwd)
    np.testing.assert_allclose(back_project(inp, meta), pts, atol=1e-3)
    out = back_project(np.concatenate([inp, np.ones((5, 17, 1))], axis=2).astype(np.float32), meta)
    assert out.dtype == np.float32 and np.all(out[..., 2] == 1)


def test_multi_scale_size_rules() -> None:
    assert multi_scale_size((480, 640), 512).size_wh == (704, 512)
    assert multi_scale_size((640, 480), 512).size_wh == (512, 704)
    assert multi_scale_size((480, 640), 512, 0.5).size_wh == (352, 256)
    # 512 / 500 * 563 = 576.5: the HRNet rule rounds it down to 576, a true ceiling up to 640
    assert multi_scale_size((500, 563), 512).size_wh == (576, 512)
    assert multi_scale_size((500, 563), 512, rounding="ceil").size_wh == (640, 512)
    # other multiples
    assert multi_scale_size((480, 640), 500, multiple=50).size_wh == (700, 500)
    assert multi_scale_size((480, 640), 512, multiple=1).size_wh == (682, 512)
    # centre: half up (DEKR) vs Python round (mmpose)
    assert multi_scale_size((301, 301), 512).center == (151.0, 151.0)
    assert multi_scale_size((301, 301), 512, center_rounding="half_even").center == (150.0, 150.0)
    m = multi_scale_size((300, 600), 256)
    assert m.scale[1] == pytest.approx(300 / 200) and m.scale[0] / m.scale[1] == pytest.approx(512 / 256)
    with pytest.raises(ValueError, match="image size must be positive"):
        multi_scale_size((0, 4), 512)
    with pytest.raises(ValueError, match="rounding must be"):
        round_to_multiple(3.0, 64, "up")  # type: ignore[arg-type]


def test_crop_affine_centre_scale_and_rotation() -> None:
    t, prod = crop_affine((100.0, 60.0), 1.0, 128)
    np.testing.assert_allclose(apply_affine(np.array([100.0, 60.0]), t), [64, 64])
    assert prod == pytest.approx((128 / 200) ** 2)
    r, prod_r = crop_affine((100.0, 60.0), 1.0, 128, 30.0)
    assert prod_r == prod  # the scale product is taken before the rotation
    np.testing.assert_allclose(apply_affine(np.array([100.0, 60.0]), r), [64, 64], atol=1e-9)
    # a point to the right of the centre turns counter-clockwise on screen (y up = smaller y)
    p = apply_affine(np.array([100.0 + 50.0, 60.0]), r)
    ang = np.degrees(np.arctan2(-(p[1] - 64), p[0] - 64))
    assert ang == pytest.approx(30.0)


def test_warps() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    meta = multi_scale_size((64, 64), 64)
    assert meta.size_wh == (64, 64) and meta.center == (32.0, 32.0)
    assert np.array_equal(warp_image(img, meta), img)  # identity geometry
    shifted = warp_affine(img, np.array([[1.0, 0, 5], [0, 1, 0]]), (64, 64))
    assert np.array_equal(shifted[:, 5:], img[:, :-5]) and not shifted[:, :5].any()  # zero border
    mask = np.zeros((32, 32), np.float32)
    mask[8:16, 8:24] = 1
    assert np.array_equal(warp_mask(mask, np.eye(3), 32), mask)
    half = warp_mask(mask, np.array([[0.5, 0, 0], [0, 0.5, 0]]), (16, 8))
    assert half.shape == (8, 16) and half.dtype == np.float32 and set(np.unique(half)) <= {0.0, 1.0}
    assert half[4:8, 4:12].all() and not half[:3].any()


def test_warp_meta_is_frozen() -> None:
    m = WarpMeta((1, 2), (3, 4), (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(AttributeError):
        m.size_wh = (1, 1)  # type: ignore[misc]


def test_short_side_resize_and_padding() -> None:
    assert short_side_resize_size((480, 640), 800) == (800, 1066)
    assert short_side_resize_size((480, 640), 800, 1333) == (800, 1066)
    assert short_side_resize_size((400, 1200), 800, 1333) == (444, 1332)  # long side capped
    assert short_side_resize_size((800, 600), 600) == (800, 600)  # already there
    img = np.ones((70, 129, 3), np.uint8)
    out, pad = pad_to_multiple(img, 64, value=128)
    assert out.shape == (128, 192, 3) and pad == (58, 63)
    assert np.all(out[:70, :129] == 1) and np.all(out[70:] == 128) and np.all(out[:, 129:] == 128)
    same, none = pad_to_multiple(out, 64)
    assert none == (0, 0) and np.array_equal(same, out)
