"""LOGO-CAP test-time geometry and normalisation (core's bupose.core.algorithms, as the pipeline
uses them) against the official fixture preprocess.json (shared/golden/logocap/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bupose.core.algorithms.geometry import back_project, center_scale_affine, multi_scale_size
from bupose.core.algorithms.image import normalize_images

sys.path.insert(0, str(Path(__file__).parent))
from _logocap_golden import LOGOCAP

DOC = json.loads((LOGOCAP / "preprocess.json").read_text())
ENTRIES = DOC["entries"]


def test_fixture_has_84_cases() -> None:
    assert len(ENTRIES) == 84


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e['image_hw']}-{e['input_size']}-{e['scale_factor']}")
def test_geometry_matches_official(entry: dict) -> None:
    meta = multi_scale_size(entry["image_hw"], entry["input_size"], entry["scale_factor"])
    assert list(meta.size_wh) == entry["resized_wh"]
    assert list(meta.center) == entry["center"]
    np.testing.assert_allclose(meta.scale, entry["scale"], rtol=0, atol=1e-6)
    fwd = center_scale_affine(meta.center, meta.scale, meta.size_wh)
    inv = center_scale_affine(meta.center, meta.scale, meta.size_wh, inverse=True)
    np.testing.assert_allclose(fwd, entry["affine"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(inv, entry["affine_inv"], rtol=0, atol=1e-6)
    pts = back_project(np.asarray(entry["points_input"], dtype=np.float64), meta)
    np.testing.assert_allclose(pts, entry["points_image"], rtol=0, atol=1e-6)


def test_normalisation_is_imagenet_to_tensor_normalize() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = normalize_images([img])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    ref = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - mean) / std
    assert float((x[0] - ref).abs().max()) == 0.0
