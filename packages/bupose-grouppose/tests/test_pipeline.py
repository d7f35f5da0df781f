"""Pipeline options on a small model: defaults, ``--amp`` (autocast, or fp32 with a warning on a CPU
without native bf16), ``num_select``, and the refusal of flip / multi-scale in Python."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bupose.core.amp import cpu_has_native_bf16
from bupose.core.model import build_model
from bupose.core.options import OptionError
from bupose.core.testing import bench_stage_results
from bupose.grouppose.pipeline import GroupPosePipeline

SMALL = {"num_queries": 10, "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 64, "hidden_dim": 64, "nheads": 4}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("grouppose", "resnet18", head_kwargs=SMALL).eval()


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), rng.integers(0, 255, (70, 50, 3), dtype=np.uint8)]


def test_sizes_and_selection(model) -> None:
    pipe = GroupPosePipeline(model, input_size=64, num_select=6)
    assert (pipe.short_side, pipe.max_size, pipe.batch_mode) == (64, 107, "independent")
    assert GroupPosePipeline(model).short_side == 800 and GroupPosePipeline(model).max_size == 1333
    raw = pipe.raw_results(_images())
    assert [len(r.scores) for r in raw] == [6, 6]
    poses = pipe.predict_batch(_images())
    for r, p in zip(raw, poses, strict=True):
        assert len(p) == int((r.labels == 1).sum())
    everything = GroupPosePipeline(model, input_size=64).predict_batch(_images())  # top-50 of 10x2: all 10 people
    assert [len(p) for p in everything] == [10, 10]
    for p, (h, w) in zip(everything, [(60, 80), (70, 50)], strict=True):
        assert p.keypoints[..., 0].min() >= 0 and p.keypoints[..., 0].max() <= w  # scaled by the original size
        assert p.keypoints[..., 1].min() >= 0 and p.keypoints[..., 1].max() <= h


def test_amp(model) -> None:
    plain = GroupPosePipeline(model, input_size=64).predict_batch(_images())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        amp = GroupPosePipeline(model, input_size=64, amp=True).predict_batch(_images())
    if not cpu_has_native_bf16():
        assert any("bfloat16" in str(w.message) for w in caught)
        for a, b in zip(amp, plain, strict=True):
            np.testing.assert_allclose(a.keypoints, b.keypoints)
    else:
        assert [len(a) for a in amp] == [len(b) for b in plain] == [10, 10]
        assert all(np.isfinite(a.keypoints).all() for a in amp)


@pytest.mark.parametrize(("values", "message"), [
    ({"flip": True}, "no flip test"), ({"scales": (1.0, 2.0)}, "no multi-scale test"), ({"batch_mode": "x"}, "batch_mode"),
])  # fmt: skip
def test_refusals(model, values: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        GroupPosePipeline(model, **values)


def test_bench_reports_forward_and_decode() -> None:
    """`bupose bench --head grouppose`: network vs PostProcess, side by side, batch 1 and padded batch 2."""
    bench_stage_results("grouppose", "resnet18", {"input_size": "64", "batch_mode": "pad"})
