"""Property tests (issue 17): the example codec and candidate finder on random and degenerate inputs
(all-equal maps, NaN, one-pixel maps, joints outside the input) never crash and never give a NaN in
the results that are written."""

from __future__ import annotations

import json

import numpy as np
import torch
from bupose_example_head.codec import ExampleHeatmapCodec
from bupose_example_head.pipeline import heatmap_candidates
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
FILL = st.sampled_from(["random", "zeros", "equal", "nan", "inf", "neg"])


def _maps(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    if kind == "zeros":
        return torch.zeros(shape)
    if kind == "equal":
        return torch.full(shape, 0.5)
    if kind == "neg":
        return -x
    if kind in ("nan", "inf"):
        x.view(-1)[seed % x.numel()] = float(kind)
    return x


@SETTINGS
@given(kind=FILL, b=st.integers(1, 3), h=st.integers(1, 8), w=st.integers(1, 8), seed=st.integers(0, 9999))
def test_decode_never_writes_nan(kind: str, b: int, h: int, w: int, seed: int) -> None:
    codec = ExampleHeatmapCodec("coco17", 32)
    poses = codec.decode({"heatmap": _maps(kind, (b, 17, h, w), seed)}, [{}] * b)
    assert len(poses) == b
    for p in poses:
        assert p.keypoints.shape[1:] == (17, 3)
        json.dumps(p.to_coco(1), allow_nan=False)


@SETTINGS
@given(kind=FILL, h=st.integers(1, 8), w=st.integers(1, 8), k=st.integers(1, 5),
       threshold=st.one_of(st.none(), st.floats(0, 1)), seed=st.integers(0, 9999))
def test_candidates_are_finite_and_inside(kind: str, h: int, w: int, k: int, threshold: float | None, seed: int) -> None:
    xy, scores = heatmap_candidates(_maps(kind, (17, h, w), seed), 4.0, k, threshold)
    assert len(xy) == len(scores) == 17
    for pts, sc in zip(xy, scores):
        assert pts.shape == (len(sc), 2) and len(sc) <= k
        assert np.all(np.isfinite(sc)) and np.all(np.isfinite(pts))
        assert np.all(pts >= -1.0) and np.all(pts[:, 0] <= 4.0 * w) and np.all(pts[:, 1] <= 4.0 * h)


@SETTINGS
@given(n=st.integers(0, 3), seed=st.integers(0, 9999), odd=st.sampled_from([None, "nan", "outside", "invisible"]))
def test_encode_degenerate_people(n: int, seed: int, odd: str | None) -> None:
    rng = np.random.default_rng(seed)
    kps = np.concatenate([rng.uniform(0, 32, (n, 17, 2)), np.full((n, 17, 1), 2.0)], axis=2)
    if n and odd == "nan":
        kps[0, 0, :2] = np.nan
        kps[0, 0, 2] = 0  # an unlabelled joint may carry any coordinates
    elif n and odd == "outside":
        kps[0, :, :2] += 500
    elif n and odd == "invisible":
        kps[:, :, 2] = 0
    enc = ExampleHeatmapCodec("coco17", 32).encode({"keypoints": kps})
    assert torch.isfinite(enc.dense["heatmap"]).all() and torch.isfinite(enc.dense["weight"]).all()
