"""``preprocess.pt`` / ``preprocess_sizes.json``: the val resize rule (exact), point mapping, the
Pillow resize + normalisation pixel cases (exact with Pillow; the README allows ±1 level) and the
bottom-right padded batch with its mask."""

from __future__ import annotations

import json

import _grouppose_golden as _golden
import numpy as np
import pytest
import torch

from bupose.core.algorithms.geometry import short_side_resize_size
from bupose.grouppose.preprocess import default_max_size, pad_batch, resize_image, to_network_input

FIX = _golden.fixture("preprocess.pt")
SIZES = json.loads((_golden.GP / "preprocess_sizes.json").read_text())["cases"]


@pytest.mark.parametrize("case", SIZES, ids=lambda c: "x".join(map(str, c["orig_wh"])))
def test_size_rule(case) -> None:
    w, h = case["orig_wh"]
    rh, rw = short_side_resize_size((h, w), 800, 1333)
    assert [rw, rh] == case["resized_wh"]


def test_defaults() -> None:
    assert int(FIX["meta/short_side"]) == 800 and int(FIX["meta/max_size"]) == 1333
    assert default_max_size(800) == 1333 and default_max_size(400) == 666
    torch.testing.assert_close(FIX["meta/mean"].float(), torch.tensor([0.485, 0.456, 0.406]))


@pytest.mark.parametrize("i", range(12))
def test_point_mapping(i: int) -> None:
    ow, oh = (int(v) for v in FIX[f"case{i}/orig_wh"])
    rh, rw = short_side_resize_size((oh, ow), 800, 1333)
    assert (rw, rh) == tuple(int(v) for v in FIX[f"case{i}/resized_wh"])
    pts = FIX[f"case{i}/points_orig_xy"].double()
    resized = pts * torch.tensor([rw / ow, rh / oh], dtype=torch.float64)
    torch.testing.assert_close(resized, FIX[f"case{i}/points_resized_xy"].double(), rtol=1e-6, atol=1e-4)
    norm = resized / torch.tensor([rw, rh], dtype=torch.float64)
    torch.testing.assert_close(norm, FIX[f"case{i}/points_normalised_xy"].double(), rtol=1e-6, atol=1e-6)
    back = norm * torch.tensor([ow, oh], dtype=torch.float64)  # PostProcess scales by the original size
    torch.testing.assert_close(back, FIX[f"case{i}/points_back_to_orig_xy"].double(), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("j", range(3))
def test_pixel_resize_and_normalise(j: int) -> None:
    img = FIX[f"pixel{j}/image_uint8_hwc"].numpy()
    out = resize_image(img, int(FIX[f"pixel{j}/size"]), int(FIX[f"pixel{j}/max_size"]))
    ref = FIX[f"pixel{j}/resized_uint8_hwc"].numpy()
    assert out.shape == ref.shape
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    x = to_network_input(ref)
    torch.testing.assert_close(x, FIX[f"pixel{j}/normalised_chw"], rtol=0, atol=1e-6)


def test_pixel_resize_is_exact_with_this_pillow() -> None:
    import PIL

    if PIL.__version__ not in FIX["meta/generated_with"]:
        pytest.skip(f"fixture made with {FIX['meta/generated_with']}, here Pillow {PIL.__version__}")
    for j in range(3):
        img = FIX[f"pixel{j}/image_uint8_hwc"].numpy()
        out = resize_image(img, int(FIX[f"pixel{j}/size"]), int(FIX[f"pixel{j}/max_size"]))
        assert np.array_equal(out, FIX[f"pixel{j}/resized_uint8_hwc"].numpy())


def test_batch_padding() -> None:
    tensors = [FIX[f"pixel{j}/normalised_chw"] for j in range(3)]
    batch = pad_batch(tensors)
    assert torch.equal(batch.images, FIX["batch/tensors"])
    assert batch.pad_mask is not None and torch.equal(batch.pad_mask, FIX["batch/mask"])
    same = pad_batch([tensors[0], tensors[0]])
    assert same.pad_mask is not None and not same.pad_mask.any()
