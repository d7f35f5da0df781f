"""Property tests (issue 17): the DEKR decoder and codec on random and degenerate inputs (all-equal
maps, NaN, tiny maps, single-pixel images, joints outside the image) never crash and never give a
NaN in the results that are written."""

from __future__ import annotations

import json

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bupose.core.algorithms.geometry import multi_scale_size
from bupose.dekr.codec import DEKRCodec
from bupose.dekr.decode import DEKRDecoder, ScaleOutput

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
FILL = st.sampled_from(["random", "zeros", "ones", "equal", "nan", "inf", "huge"])
DECODER = DEKRDecoder("coco17")


def _maps(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen)
    if kind == "zeros":
        return torch.zeros(shape)
    if kind == "ones":
        return torch.ones(shape)
    if kind == "equal":
        return torch.full(shape, 0.37)
    if kind == "nan":
        x.view(-1)[seed % x.numel()] = float("nan")
    if kind == "inf":
        x.view(-1)[seed % x.numel()] = float("inf")
    if kind == "huge":
        x = x * 1e30
    return x


@SETTINGS
@given(image_hw=st.tuples(st.integers(1, 300), st.integers(1, 300)).filter(lambda hw: max(hw) <= 32 * min(hw)),
       heat=FILL, offset=FILL,
       seed=st.integers(0, 10_000), flip=st.booleans())
def test_dekr_decode_is_finite(image_hw: tuple[int, int], heat: str, offset: str, seed: int, flip: bool) -> None:
    meta = multi_scale_size(image_hw, 64)
    w, h = meta.size_wh[0] // 4, meta.size_wh[1] // 4
    hm = _maps(heat, (18, h, w), seed)
    off = (_maps(offset, (34, h, w), seed + 1) - 0.5) * 8
    out = ScaleOutput(1.0, hm, off, hm.clone() if flip else None, off.clone() if flip else None, meta)
    poses = DECODER.decode([out])
    assert poses.keypoints.shape[1:] == (17, 3)
    entries = poses.to_coco(1)
    json.dumps(entries, allow_nan=False)  # what bupose writes: never NaN/inf
    if heat in ("random", "zeros", "ones", "equal") and offset in ("random", "zeros", "ones", "equal"):
        assert np.all(np.isfinite(poses.keypoints)) and np.all(np.isfinite(poses.scores))


@SETTINGS
@given(n=st.integers(0, 3), seed=st.integers(0, 10_000),
       odd=st.sampled_from([None, "nan", "outside", "negative", "invisible", "stacked"]))
def test_dekr_encode_degenerate_people(n: int, seed: int, odd: str | None) -> None:
    rng = np.random.default_rng(seed)
    kps = np.concatenate([rng.uniform(0, 64, (n, 17, 2)), np.full((n, 17, 1), 2.0)], axis=2)
    if n and odd == "nan":
        kps[0, 3, :2] = np.nan
    elif n and odd == "outside":
        kps[0, :, :2] += 1000
    elif n and odd == "negative":
        kps[0, :, :2] -= 1000
    elif n and odd == "invisible":
        kps[:, :, 2] = 0
    elif n and odd == "stacked":
        kps[:, :, :2] = 10.0
    areas = np.full(n, 200.0)
    enc = DEKRCodec("coco17", 64).encode({"keypoints": kps, "areas": areas})
    for key in ("heatmap", "heatmap_weight", "offset", "offset_weight"):
        assert torch.isfinite(enc[key]).all(), key
