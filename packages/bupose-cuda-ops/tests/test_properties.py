"""Property tests: random geometry, far-away offsets and empty batches give equal results
(forward and gradients, float64) in every implementation, and never crash."""

from __future__ import annotations

import pytest
import torch
from cuda_ops_testutil import dcn_inputs, get_impl, msda_inputs, to_device
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _run(fn, args: dict, keys: tuple[str, ...]):
    args = {
        k: (v.detach().clone().requires_grad_(True) if k in keys and v is not None else v)
        for k, v in args.items()
    }
    out = fn(**args)
    leaves = [args[k] for k in keys if args[k] is not None]
    grads = torch.autograd.grad(out.sum(), leaves, allow_unused=True)
    return out, [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves)]


@st.composite
def dcn_geometry(draw):
    groups = draw(st.integers(1, 3))
    offset_groups = draw(st.integers(1, 3))
    per = draw(st.integers(1, 2))
    c_in = groups * offset_groups * per
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    hw = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    for i in range(2):
        assume(hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1 >= 0)
    return {
        "b": draw(st.integers(0, 2)),
        "c_in": c_in,
        "c_out": groups * draw(st.integers(1, 2)),
        "hw": hw,
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "offset_groups": offset_groups,
        "offset_scale": draw(st.sampled_from([0.0, 0.7, 3.0, 1e3, 1e7])),
        "mask": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


@SETTINGS
@given(geo=dcn_geometry())
def test_deform_conv2d_implementations_agree(compiled, geo):
    name, device = compiled
    seed = geo.pop("seed")
    args = dcn_inputs(torch.Generator().manual_seed(seed), dtype=torch.float64, **geo)
    keys = ("input", "offset", "weight", "bias", "mask")
    want, want_g = _run(get_impl("deform_conv2d", "reference"), args, keys)
    got, got_g = _run(get_impl("deform_conv2d", name), to_device(args, device), keys)
    assert got.shape == want.shape
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-9)


@st.composite
def msda_geometry(draw):
    levels = draw(st.integers(1, 3))
    lo = draw(st.sampled_from([-0.2, -5.0, 0.0]))
    return {
        "n": draw(st.integers(0, 2)),
        "lq": draw(st.integers(0, 4)),
        "m": draw(st.integers(1, 3)),
        "d": draw(st.integers(1, 4)),
        "shapes": tuple((draw(st.integers(1, 5)), draw(st.integers(1, 5))) for _ in range(levels)),
        "points": draw(st.integers(1, 3)),
        "lo": lo,
        "hi": draw(st.sampled_from([1.2, 6.0, 1.0])),
        "seed": draw(st.integers(0, 2**16)),
    }


@SETTINGS
@given(geo=msda_geometry())
def test_ms_deform_attn_implementations_agree(compiled, geo):
    name, device = compiled
    seed = geo.pop("seed")
    args = msda_inputs(torch.Generator().manual_seed(seed), dtype=torch.float64, **geo)
    keys = ("value", "sampling_locations", "attention_weights")
    want, want_g = _run(get_impl("ms_deform_attn", "reference"), args, keys)
    got, got_g = _run(get_impl("ms_deform_attn", name), to_device(args, device), keys)
    assert got.shape == want.shape == (geo["n"], geo["lq"], geo["m"] * geo["d"])
    torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 3e38])
def test_deform_conv2d_non_finite_offsets_sample_nothing(impl, value):
    name, device = impl
    args = dcn_inputs(torch.Generator().manual_seed(20), bias=False)
    args["offset"] = torch.full_like(args["offset"], value)
    out = get_impl("deform_conv2d", name)(**to_device(args, device))
    assert torch.equal(out.cpu(), torch.zeros_like(out.cpu()))
