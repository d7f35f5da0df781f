"""Every implementation against the reference, conv2d, gradcheck and the golden fixtures."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from cuda_ops_testutil import DATA, dcn_inputs, get_impl, msda_inputs, to_device

GRAD_KEYS_DCN = ("input", "offset", "weight", "bias", "mask")
GRAD_KEYS_MSDA = ("value", "sampling_locations", "attention_weights")


def _grads(fn, args: dict, keys: tuple[str, ...], seed: int = 0):
    args = {
        k: (v.detach().clone().requires_grad_(True) if k in keys and v is not None else v)
        for k, v in args.items()
    }
    out = fn(**args)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(out.device)
    leaves = [args[k] for k in keys if args[k] is not None]
    return out, torch.autograd.grad((out * w).sum(), leaves)


DCN_CASES = {
    "dekr-adapt": {"c_in": 15, "c_out": 15, "hw": (16, 24), "offset_scale": 3.0},
    "stride-dil-groups": {
        "c_in": 6,
        "c_out": 4,
        "stride": (2, 1),
        "dilation": (1, 2),
        "padding": (2, 1),
        "groups": 2,
    },
    "offset-groups-mask": {"c_in": 6, "c_out": 6, "offset_groups": 3, "mask": True, "kernel": (3, 2)},
    "no-bias-1x1": {"kernel": (1, 1), "padding": (0, 0), "bias": False},
    "far-outside": {"offset_scale": 50.0, "mask": True},
}


@pytest.mark.parametrize("case", list(DCN_CASES))
def test_deform_conv2d_forward_and_grad_equal_reference(impl, case):
    name, device = impl
    args = dcn_inputs(torch.Generator().manual_seed(11), **DCN_CASES[case])
    want, want_g = _grads(get_impl("deform_conv2d", "reference"), args, GRAD_KEYS_DCN)
    got, got_g = _grads(get_impl("deform_conv2d", name), to_device(args, device), GRAD_KEYS_DCN)
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-5)
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channel_slice", "float64"])
@pytest.mark.parametrize("case", list(DCN_CASES))
def test_deform_conv2d_inference_path_equals_reference(impl, case, layout):
    """Without gradients the CPU op samples channels-last columns; any input layout, same values."""
    name, device = impl
    args = dcn_inputs(torch.Generator().manual_seed(13), **DCN_CASES[case])
    want = get_impl("deform_conv2d", "reference")(**args)
    x = args["input"]
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "channel_slice":  # DEKR's per-joint slices of one channels-last map
        wide = torch.cat([torch.randn_like(x), x, torch.randn_like(x)], 1).contiguous(memory_format=torch.channels_last)
        x = wide[:, x.shape[1] : 2 * x.shape[1]]
        assert x.stride(1) == 1 and not x.is_contiguous()
    elif layout == "float64":
        args = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in args.items()}
        x, want = args["input"], want.double()
    with torch.no_grad():
        got = get_impl("deform_conv2d", name)(**to_device({**args, "input": x}, device))
    assert got.dtype == want.dtype and got.shape == want.shape
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-5)
    trained, _ = _grads(get_impl("deform_conv2d", name), to_device(args, device), ("input",))
    torch.testing.assert_close(got, trained.detach(), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"), [(1, 1, 1, 1), (2, 0, 2, 3), (1, 2, 1, 3)]
)
def test_deform_conv2d_zero_offset_equals_conv2d(impl, stride, padding, dilation, groups):
    name, device = impl
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 6, 12, 10, generator=g)
    weight = torch.randn(9, 6 // groups, 3, 3, generator=g) / 3
    bias = torch.randn(9, generator=g)
    want = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    offset = torch.zeros(2, 18, *want.shape[2:])
    args = to_device({"input": x, "offset": offset, "weight": weight, "bias": bias}, device)
    got = get_impl("deform_conv2d", name)(**args, stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-5)


def test_deform_conv2d_gradcheck_float64(impl):
    name, device = impl
    fn = get_impl("deform_conv2d", name)
    args = dcn_inputs(
        torch.Generator().manual_seed(13),
        b=2,
        c_in=2,
        c_out=2,
        hw=(4, 5),
        kernel=(2, 3),
        groups=2,
        offset_groups=2,
        mask=True,
        stride=(2, 1),
        dilation=(1, 2),
        padding=(1, 2),
        offset_scale=1.3,
        dtype=torch.float64,
    )
    args = to_device(args, device)
    tensors = [args[k].requires_grad_(True) for k in GRAD_KEYS_DCN]
    rest = {k: args[k] for k in ("stride", "padding", "dilation")}
    assert torch.autograd.gradcheck(
        lambda x, o, w, b, m: fn(x, o, w, b, mask=m, **rest), tensors, eps=1e-6, atol=1e-5, rtol=1e-4
    )


def test_msda_forward_and_grad_equal_reference(impl):
    name, device = impl
    args = msda_inputs(torch.Generator().manual_seed(14))
    want, want_g = _grads(get_impl("ms_deform_attn", "reference"), args, GRAD_KEYS_MSDA)
    got, got_g = _grads(get_impl("ms_deform_attn", name), to_device(args, device), GRAD_KEYS_MSDA)
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-5)
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5)


def test_msda_gradcheck_float64(impl):
    name, device = impl
    fn = get_impl("ms_deform_attn", name)
    args = to_device(
        msda_inputs(torch.Generator().manual_seed(15), n=1, lq=3, m=2, d=2, dtype=torch.float64), device
    )
    tensors = [args[k].requires_grad_(True) for k in GRAD_KEYS_MSDA]
    ss, start = args["spatial_shapes"], args["level_start_index"]
    assert torch.autograd.gradcheck(lambda v, lo, a: fn(v, ss, start, lo, a), tensors, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("case", [0, 1, 2])
def test_msda_golden_fixture(impl, case):
    """grouppose/msda_core.pt: the official pure-PyTorch MSDA core, forward and gradients."""
    name, device = impl
    fx = torch.load(DATA / "grouppose" / "msda_core.pt", weights_only=True)
    keys = ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")
    args = {k: fx[f"case{case}/input/{k}"] for k in keys}
    fn = get_impl("ms_deform_attn", name)
    if f"case{case}/input/grad_weight" not in fx:
        out = fn(**to_device(args, device))
        torch.testing.assert_close(out.cpu(), fx[f"case{case}/output"], rtol=0, atol=1e-5)
        return
    leaves = {k: v.to(device).requires_grad_(k in GRAD_KEYS_MSDA) for k, v in args.items()}
    out = fn(**leaves)
    torch.testing.assert_close(out.detach().cpu(), fx[f"case{case}/output"], rtol=0, atol=1e-5)
    (out * fx[f"case{case}/input/grad_weight"].to(device)).sum().backward()
    for k in GRAD_KEYS_MSDA:
        want = fx[f"case{case}/grad/{k}"]
        got = leaves[k].grad.cpu()
        # The fixture's float32 gradients differ from the exact (float64) values by up to 6.4e-5 on
        # |g| <= 71, so compare at 1e-5 relative to the gradient's scale.
        scale = max(1.0, float(want.abs().max()))
        assert float((got - want).abs().max()) <= 1e-5 * scale, k


@pytest.mark.skipif(importlib.util.find_spec("zlib") is None, reason="zlib missing")
def test_deform_conv2d_dekr_adapt_block_golden(impl):
    """dekr/forward_heads_w32_coco.pt: the first AdaptBlock's DeformConv2d, checked through the block
    output relu(bn(deform_conv(x, offset)) + x) with recipe weights."""
    import importlib.machinery
    import importlib.util as iu

    name, device = impl
    loader = importlib.machinery.SourceFileLoader("golden_recipe", str(DATA / "recipe.py"))
    spec = iu.spec_from_loader("golden_recipe", loader)
    recipe = iu.module_from_spec(spec)
    loader.exec_module(recipe)
    fx = torch.load(DATA / "dekr" / "forward_heads_w32_coco.pt", weights_only=True)
    prefix = "offset_feature_layers.0.0."
    x = fx["debug/offset_feature_layers.0.0.adapt_conv/input"]
    offset = fx["debug/offset_feature_layers.0.0.adapt_conv/offset"]
    weight = recipe.golden_tensor(prefix + "adapt_conv.weight", (15, 15, 3, 3))
    bn = {
        k: recipe.golden_tensor(prefix + "bn." + k, (15,))
        for k in ("weight", "bias", "running_mean", "running_var")
    }
    y = get_impl("deform_conv2d", name)(
        x.to(device), offset.to(device), weight.to(device), None, 1, 1, 1
    ).cpu()
    out = torch.relu(
        F.batch_norm(y, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"], False, 0.0, 1e-5) + x
    )
    want = fx["debug/offset_feature_layers.0.0/out"]
    assert float((out - want).abs().max()) <= 1e-4 * max(1.0, float(want.abs().max()))


def test_half_precision_inputs_run_in_float32(compiled):
    name, device = compiled
    args = dcn_inputs(torch.Generator().manual_seed(16))
    want = get_impl("deform_conv2d", "reference")(**args)
    half = {
        k: v.to(device=device, dtype=torch.bfloat16) if isinstance(v, torch.Tensor) else v
        for k, v in args.items()
    }
    got = get_impl("deform_conv2d", name)(**half)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float().cpu(), want, rtol=0.05, atol=0.1)


def test_mixed_precision_inputs_as_under_autocast(compiled):
    """bf16 activations with float32 weights (what autocast produces) run in float32, with gradients."""
    name, device = compiled
    args = dcn_inputs(torch.Generator().manual_seed(19))
    want = get_impl("deform_conv2d", "reference")(**args)
    mixed = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    mixed["input"] = mixed["input"].to(torch.bfloat16).requires_grad_()
    mixed["weight"] = mixed["weight"].clone().requires_grad_()
    got = get_impl("deform_conv2d", name)(**mixed)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float().cpu(), want, rtol=0.05, atol=0.1)
    got.float().sum().backward()
    assert mixed["input"].grad.dtype == torch.bfloat16
    assert mixed["weight"].grad.dtype == torch.float32
    with pytest.raises(TypeError, match="floating-point"):
        get_impl("deform_conv2d", name)(**{**mixed, "offset": mixed["offset"].long()})


def test_compiled_ops_reject_tensors_on_the_wrong_device():
    from bupose.cuda_ops.functions import deform_conv2d_cuda, ms_deform_attn_cuda

    args = dcn_inputs(torch.Generator().manual_seed(17))
    with pytest.raises(ValueError, match="runs on cuda tensors"):
        deform_conv2d_cuda(**args)
    with pytest.raises(ValueError, match="runs on cuda tensors"):
        ms_deform_attn_cuda(**msda_inputs(torch.Generator().manual_seed(18)))


def test_large_batch_is_chunked_consistently(monkeypatch):
    """A column budget smaller than one batch forces per-sample chunks; results must not change."""
    from bupose.cuda_ops import functions

    fn = get_impl("deform_conv2d", "cpp")
    args = dcn_inputs(torch.Generator().manual_seed(19), b=5, mask=True)
    want, want_g = _grads(fn, args, GRAD_KEYS_DCN)
    monkeypatch.setattr(functions, "_COLUMN_BUDGET", 1)
    got, got_g = _grads(fn, args, GRAD_KEYS_DCN)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
