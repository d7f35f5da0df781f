"""DEKR test-time geometry against the official fixtures (shared/golden/dekr/preprocess.json and
e2e/e2e_inputs.pt, copied byte for byte into tests/data/golden/dekr)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bupose.core.algorithms.geometry import center_scale_affine as affine_matrix
from bupose.dekr.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WarpMeta,
    back_project,
    multi_scale_size,
    normalize_images,
    warp_image,
)

sys.path.insert(0, str(Path(__file__).parent))
from _dekr_golden import DEKR, E2E

ENTRIES = json.loads((DEKR / "preprocess.json").read_text())["entries"]


def test_fixture_has_84_cases() -> None:
    assert len(ENTRIES) == 84


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e['image_hw']}-{e['input_size']}-{e['scale_factor']}")
def test_geometry_matches_official(entry: dict) -> None:
    meta = multi_scale_size(entry["image_hw"], entry["input_size"], entry["scale_factor"])
    assert list(meta.size_wh) == entry["resized_wh"]
    assert list(meta.center) == entry["center"]
    np.testing.assert_allclose(meta.scale, entry["scale"], rtol=0, atol=1e-6)
    fwd = affine_matrix(meta.center, meta.scale, meta.size_wh)
    inv = affine_matrix(meta.center, meta.scale, meta.size_wh, inverse=True)
    np.testing.assert_allclose(fwd, entry["affine"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(inv, entry["affine_inv"], rtol=0, atol=1e-6)
    pts = back_project(np.asarray(entry["points_input"], dtype=np.float64), meta)
    np.testing.assert_allclose(pts, entry["points_image"], rtol=0, atol=1e-6)


def test_long_side_rule_is_not_a_true_ceiling() -> None:
    # short 480 -> 512: 640 * 512 / 480 = 682.67 -> floor((682.67 + 63) / 64) * 64 = 704
    assert multi_scale_size((480, 640), 512).size_wh == (704, 512)
    # short 600 -> 512: 751 * 512 / 600 = 640.85 -> floor(703.85 / 64) * 64 = 640 (a ceiling gives 704)
    assert multi_scale_size((600, 751), 512).size_wh == (640, 512)
    # portrait: width is the short side
    assert multi_scale_size((640, 480), 512).size_wh == (512, 704)
    # centre rounds half up: 301 / 2 = 150.5 -> 151 (Python's round gives 150), 303 / 2 -> 152
    assert multi_scale_size((301, 303), 512).center == (152.0, 151.0)


def test_back_projection_keeps_extra_columns_and_dtype() -> None:
    meta = multi_scale_size((300, 420), 256)
    pts = np.array([[[10.0, 20.0, 0.7], [0.0, 0.0, -0.1]]], dtype=np.float32)
    out = back_project(pts, meta)
    assert out.dtype == np.float32 and out.shape == pts.shape
    np.testing.assert_array_equal(out[..., 2], pts[..., 2])
    # forward then back is the identity
    fwd = affine_matrix(meta.center, meta.scale, meta.size_wh)
    img_pt = np.array([123.0, 45.0])
    inp = fwd @ np.array([*img_pt, 1.0])
    back = back_project(inp[None].astype(np.float64), meta)[0]
    np.testing.assert_allclose(back, img_pt, atol=1e-4)


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        multi_scale_size((0, 10), 512)
    with pytest.raises(ValueError, match="positive"):
        multi_scale_size((10, 10), 512, 0.0)


@pytest.mark.parametrize("name", ["000000000011.png", "000000000012.png"])
def test_e2e_warp_is_exact(name: str) -> None:
    ref = torch.load(E2E / "e2e_inputs.pt", weights_only=True)
    bgr = cv2.imread(str(E2E / name), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    assert hashlib.sha256(rgb.tobytes()).hexdigest() == ref[f"{name}/rgb_sha256"]
    meta = multi_scale_size(rgb.shape[:2], 512, 1.0)
    np.testing.assert_array_equal(meta.center, ref[f"{name}/center"].numpy())
    np.testing.assert_allclose(meta.scale, ref[f"{name}/scale"].numpy(), rtol=0, atol=1e-12)
    warped = warp_image(rgb, meta)
    expected = ref[f"{name}/warped_uint8"].numpy()
    assert warped.shape == expected.shape
    np.testing.assert_array_equal(warped, expected)


def test_normalize_matches_totensor_normalize() -> None:
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(2)]
    x = normalize_images(imgs)
    assert x.shape == (2, 3, 5, 7) and x.dtype == torch.float32
    for k, im in enumerate(imgs):
        t = torch.from_numpy(im).permute(2, 0, 1).float() / 255.0
        exp = (t - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        torch.testing.assert_close(x[k], exp, rtol=0, atol=1e-6)
    with pytest.raises(ValueError):
        normalize_images([])


def test_warp_meta_is_hashable_and_frozen() -> None:
    m = WarpMeta((1, 2), (3, 4), (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(AttributeError):
        m.size_wh = (1, 1)  # type: ignore[misc]
