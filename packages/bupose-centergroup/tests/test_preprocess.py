"""Test-time resize rule, inverse affine and pixel-exact preprocessing vs the official pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _centergroup_golden import fixture

from bupose.centergroup.pipeline import prepare_image
from bupose.core.algorithms.geometry import back_project, center_scale_affine
from bupose.core.algorithms.image import normalize_images

FX = "preprocess.pt"


@pytest.mark.parametrize("case", range(20))
def test_size_rule_and_back_projection(case: int) -> None:
    fx = fixture(FX)
    p = f"case{case}/"
    w, h = (int(v) for v in fx[p + "orig_wh"])
    image = np.zeros((h, w, 3), np.uint8)
    prep = prepare_image(image, int(fx[p + "image_size"]))
    meta = prep.meta
    assert meta.size_wh == tuple(int(v) for v in fx[p + "base_size_wh"])
    assert meta.center == tuple(float(v) for v in fx[p + "center"])
    np.testing.assert_allclose(meta.scale, fx[p + "scale"].numpy(), rtol=0, atol=1e-12)
    inv = center_scale_affine(meta.center, meta.scale, meta.size_wh, inverse=True)
    np.testing.assert_allclose(inv, fx[p + "inverse_affine_2x3"].numpy(), rtol=0, atol=1e-9)
    pts = back_project(fx[p + "points_input_xy"].numpy(), meta)
    np.testing.assert_allclose(pts, fx[p + "points_orig_xy"].numpy(), rtol=0, atol=1e-6)
    assert prep.valid_full.shape == tuple(int(v) for v in fx[p + "pad_mask_hw/2"])
    assert prep.valid_quarter.shape == tuple(int(v) for v in fx[p + "pad_mask_hw/0"])
    assert float(prep.valid_full.sum()) == float(fx[p + "pad_mask_sum/2"])
    assert float(prep.valid_quarter.sum()) == float(fx[p + "pad_mask_sum/0"])


@pytest.mark.parametrize("case", range(2))
def test_pixel_exact_cases(case: int) -> None:
    fx = fixture(FX)
    p = f"pixel{case}/"
    image = fx[p + "image_rgb_uint8"].numpy()
    prep = prepare_image(image, int(fx[p + "image_size"]))
    assert prep.meta.center == tuple(float(v) for v in fx[p + "center"])
    np.testing.assert_allclose(prep.meta.scale, fx[p + "scale"].numpy(), rtol=0, atol=1e-12)
    x = normalize_images([prep.image], "cpu")[0]
    torch.testing.assert_close(x, fx[p + "input_chw"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(prep.valid_full, fx[p + "pad_mask/2"].numpy())
    np.testing.assert_array_equal(prep.valid_quarter, fx[p + "pad_mask/0"].numpy())
