"""Official scale search / resize / pad rule (preprocess.pt, preprocess_scales.json) and the 5-scale x flip
fusion of predict() (fusion_multiscale_flip.pt)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _sp_golden import SP, load

from bupose.simplepose.preprocess import fuse_outputs, output_to_image, plan_scales, prepare_input


@pytest.fixture(scope="module")
def pre() -> dict:
    return load("preprocess.pt")


def _row(p) -> list[float]:
    return [p.scale, p.multiplier, p.multiplier_used, p.shrunk, *p.resized_wh, *p.padded_wh, p.pad_bottom, p.pad_right]


@pytest.mark.parametrize("case", range(10))
def test_scale_plan_matches(pre: dict, case: int) -> None:
    w, h = pre[f"case{case}/orig_wh"].tolist()
    plans = plan_scales(h, w, pre["meta/scale_search"].tolist(), int(pre["meta/boxsize"]))
    np.testing.assert_array_equal(np.array([_row(p) for p in plans]), pre[f"case{case}/per_scale"].numpy())
    xy = output_to_image(pre[f"case{case}/scale1_output_uv"].numpy(), (w, h), plans[1].resized_wh)
    np.testing.assert_allclose(xy, pre[f"case{case}/scale1_orig_xy"].numpy(), rtol=0, atol=1e-9)


def test_json_agrees_and_caps_hit() -> None:
    doc = json.loads((SP / "preprocess_scales.json").read_text())
    shrunk = []
    for case in doc["cases"]:
        w, h = case["orig_wh"]
        plans = plan_scales(h, w, [s["scale"] for s in case["per_scale"]])
        for p, e in zip(plans, case["per_scale"], strict=True):
            assert p.multiplier_used == e["multiplier_used"] and list(p.padded_wh) == e["padded_wh"]
            assert p.shrunk == e["shrunk"]
            if p.shrunk:
                shrunk.append((w, h, p.scale))
    assert (1000, 300, 3.0) in shrunk and (800, 200, 2.0) in shrunk


@pytest.mark.parametrize("case", [0, 1])
def test_network_input_pixel_exact(pre: dict, case: int) -> None:
    img = pre[f"pixel{case}/image_bgr_uint8"].numpy()
    m = float(pre[f"pixel{case}/scale_search_value"]) * float(pre[f"pixel{case}/boxsize"]) / img.shape[0]
    x, _, _ = prepare_input(img, m)
    np.testing.assert_array_equal(x, pre[f"pixel{case}/net_input_nhwc"].numpy())


def test_fusion_multiscale_flip() -> None:
    f = load("fusion_multiscale_flip.pt")
    img = f["input/image_bgr_uint8"].numpy()
    h, w = img.shape[:2]
    plans = plan_scales(h, w, f["meta/scale_search"].tolist(), int(f["meta/boxsize"]))
    outs, pads = [], []
    for i, p in enumerate(plans):
        x, pb, pr = prepare_input(img, p.multiplier_used)
        assert list(x.shape) == f[f"intermediate/net_input_shape/{i}"].tolist()
        if i == 0:
            np.testing.assert_array_equal(x, f["intermediate/net_input/0"].numpy())
        outs.append(f[f"input/net_output/{i}"].numpy())
        pads.append((pb, pr))
    heat, limbs = fuse_outputs(outs, pads, (h, w))
    np.testing.assert_allclose(heat, f["output/heatmap_avg_hwc"].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(limbs, f["output/paf_avg_hwc"].numpy(), rtol=0, atol=1e-6)


def test_bad_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_scales(0, 10, [1.0])
