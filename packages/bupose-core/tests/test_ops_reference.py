"""The pure-PyTorch reference ops against brute-force definitions, conv2d, and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bupose.core.ops import get_op, op_choices
from bupose.core.ops.reference import deform_conv2d, ms_deform_attn


def _bilinear_tv(plane: torch.Tensor, y: float, x: float) -> float:
    """torchvision's bilinear rule, one point, written out."""
    h, w = plane.shape
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return 0.0
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    total = 0.0
    for yy, xx, wt in (
        (y0, x0, (1 - ly) * (1 - lx)),
        (y0, x0 + 1, (1 - ly) * lx),
        (y0 + 1, x0, ly * (1 - lx)),
        (y0 + 1, x0 + 1, ly * lx),
    ):
        if 0 <= yy < h and 0 <= xx < w:
            total += wt * float(plane[yy, xx])
    return total


def _deform_conv2d_brute(x, offset, weight, bias, stride, padding, dilation, mask):
    b, c_in = x.shape[:2]
    c_out, cpg, kh, kw = weight.shape
    groups = c_in // cpg
    og = offset.shape[1] // (2 * kh * kw)
    ho, wo = offset.shape[2:]
    out = torch.zeros(b, c_out, ho, wo, dtype=torch.float64)
    for n in range(b):
        for co in range(c_out):
            g = co // (c_out // groups)
            for oy in range(ho):
                for ox in range(wo):
                    acc = 0.0 if bias is None else float(bias[co])
                    for ci in range(cpg):
                        c = g * cpg + ci
                        o = c // (c_in // og)
                        for i in range(kh):
                            for j in range(kw):
                                k = i * kw + j
                                dy = float(offset[n, o * 2 * kh * kw + 2 * k, oy, ox])
                                dx = float(offset[n, o * 2 * kh * kw + 2 * k + 1, oy, ox])
                                yy = oy * stride[0] - padding[0] + i * dilation[0] + dy
                                xx = ox * stride[1] - padding[1] + j * dilation[1] + dx
                                v = _bilinear_tv(x[n, c], yy, xx)
                                if mask is not None:
                                    v *= float(mask[n, o * kh * kw + k, oy, ox])
                                acc += float(weight[co, ci, i, j]) * v
                    out[n, co, oy, ox] = acc
    return out


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups", "og", "use_mask"),
    [
        ((1, 1), (1, 1), (1, 1), 1, 1, False),
        ((2, 1), (0, 2), (1, 2), 2, 1, True),
        ((1, 2), (1, 0), (2, 1), 1, 2, True),
    ],
)
def test_deform_conv2d_matches_brute_force(stride, padding, dilation, groups, og, use_mask):
    g = torch.Generator().manual_seed(1)
    b, c_in, h, w, c_out, kh, kw = 2, 4, 5, 6, 4, 3, 2
    x = torch.randn(b, c_in, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(c_out, c_in // groups, kh, kw, generator=g, dtype=torch.float64)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64)
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    # Offsets up to +-4 px: samples inside, on borders and outside the map.
    offset = (torch.rand(b, 2 * og * kh * kw, ho, wo, generator=g, dtype=torch.float64) - 0.5) * 8
    mask = torch.rand(b, og * kh * kw, ho, wo, generator=g, dtype=torch.float64) if use_mask else None
    got = deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)
    want = _deform_conv2d_brute(x, offset, weight, bias, stride, padding, dilation, mask)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"), [(1, 1, 1, 1), (2, 0, 2, 3), (1, 2, 1, 3)]
)
def test_deform_conv2d_zero_offset_is_conv2d(stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 11, 13, generator=g)
    weight = torch.randn(9, 6 // groups, 3, 3, generator=g)
    bias = torch.randn(9, generator=g)
    want = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    offset = torch.zeros(2, 18, *want.shape[2:])
    got = deform_conv2d(x, offset, weight, bias, stride, padding, dilation)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_deform_conv2d_integer_shift_moves_the_sampling_grid():
    # An offset of exactly (+1, -2) px everywhere is a conv of the shifted image.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 10, 10, generator=g)
    weight = torch.randn(2, 3, 3, 3, generator=g)
    offset = torch.zeros(1, 18, 8, 8)
    offset[:, 0::2] = 1.0
    offset[:, 1::2] = -2.0
    got = deform_conv2d(x, offset, weight)
    shifted = torch.zeros_like(x)
    shifted[:, :, :-1, 2:] = x[:, :, 1:, :-2]
    torch.testing.assert_close(got, F.conv2d(shifted, weight), rtol=1e-5, atol=1e-5)


def test_deform_conv2d_gradcheck():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    # Non-integer offsets keep every sample away from the kinks of the bilinear kernel.
    offset = (torch.rand(2, 36, 3, 5, generator=g, dtype=torch.float64) * 0.8 + 0.1) * torch.tensor(
        [1.0, -1.0] * 18, dtype=torch.float64
    ).view(1, 36, 1, 1)
    offset.requires_grad_(True)
    mask = torch.rand(2, 18, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: deform_conv2d(a[0], a[1], a[2], a[3], (2, 1), (1, 1), 1, a[4]),
        (x, offset, weight, bias, mask),
    )


def test_deform_conv2d_far_outside_and_empty_batch():
    x = torch.randn(1, 2, 4, 4)
    weight = torch.randn(3, 2, 3, 3)
    offset = torch.full((1, 18, 2, 2), 1e9)
    assert torch.equal(deform_conv2d(x, offset, weight), torch.zeros(1, 3, 2, 2))
    offset = torch.full((1, 18, 2, 2), float("-inf"))
    assert torch.equal(deform_conv2d(x, offset, weight), torch.zeros(1, 3, 2, 2))
    out = deform_conv2d(torch.zeros(0, 2, 4, 4), torch.zeros(0, 18, 2, 2), weight, torch.ones(3))
    assert out.shape == (0, 3, 2, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"offset": torch.zeros(1, 17, 4, 4)}, "offset must be"),
        ({"offset": torch.zeros(1, 18, 3, 4)}, "offset spatial size"),
        ({"mask": torch.zeros(1, 8, 4, 4)}, "mask must be"),
        ({"weight": torch.zeros(3, 3, 3, 3)}, "not a multiple"),
        ({"bias": torch.zeros(2)}, "bias must be"),
        ({"stride": 0}, "stride"),
    ],
)
def test_deform_conv2d_bad_arguments(kwargs, match):
    args = {
        "input": torch.zeros(1, 2, 4, 4),
        "offset": torch.zeros(1, 18, 4, 4),
        "weight": torch.zeros(3, 2, 3, 3),
        "bias": None,
        "padding": 1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        deform_conv2d(**args)


def _msda_brute(value, shapes, locs, attn):
    n, _, m, d = value.shape
    _, lq, _, _, points, _ = locs.shape
    out = torch.zeros(n, lq, m * d, dtype=torch.float64)
    starts = [0]
    for hh, ww in shapes[:-1]:
        starts.append(starts[-1] + hh * ww)
    for b in range(n):
        for q in range(lq):
            for h in range(m):
                for lvl, (hh, ww) in enumerate(shapes):
                    plane = value[b, starts[lvl] : starts[lvl] + hh * ww, h].reshape(hh, ww, d)
                    for p in range(points):
                        x = float(locs[b, q, h, lvl, p, 0]) * ww - 0.5
                        y = float(locs[b, q, h, lvl, p, 1]) * hh - 0.5
                        a = float(attn[b, q, h, lvl, p])
                        x0, y0 = math.floor(x), math.floor(y)
                        for yy, xx, wt in (
                            (y0, x0, (1 - (y - y0)) * (1 - (x - x0))),
                            (y0, x0 + 1, (1 - (y - y0)) * (x - x0)),
                            (y0 + 1, x0, (y - y0) * (1 - (x - x0))),
                            (y0 + 1, x0 + 1, (y - y0) * (x - x0)),
                        ):
                            if 0 <= yy < hh and 0 <= xx < ww:
                                out[b, q, h * d : (h + 1) * d] += a * wt * plane[yy, xx]
    return out


def _msda_inputs(g, n=2, lq=5, m=2, d=3, shapes=((4, 5), (2, 3)), points=2, dtype=torch.float64):
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=dtype)
    ss = torch.tensor(shapes, dtype=torch.long)
    start = torch.cat([ss.new_zeros(1), (ss[:, 0] * ss[:, 1]).cumsum(0)[:-1]])
    locs = torch.rand(n, lq, m, len(shapes), points, 2, generator=g, dtype=dtype) * 1.3 - 0.15
    attn = torch.rand(n, lq, m, len(shapes), points, generator=g, dtype=dtype)
    return value, ss, start, locs, attn


def test_ms_deform_attn_matches_brute_force():
    g = torch.Generator().manual_seed(5)
    value, ss, start, locs, attn = _msda_inputs(g)
    got = ms_deform_attn(value, ss, start, locs, attn)
    want = _msda_brute(value, ss.tolist(), locs, attn)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_ms_deform_attn_gradcheck():
    g = torch.Generator().manual_seed(6)
    value, ss, start, locs, attn = _msda_inputs(g, n=1, lq=3)
    for t in (value, locs, attn):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v, lo, a: ms_deform_attn(v, ss, start, lo, a), (value, locs, attn))


def test_ms_deform_attn_bad_arguments_and_empty():
    g = torch.Generator().manual_seed(7)
    value, ss, start, locs, attn = _msda_inputs(g, dtype=torch.float32)
    with pytest.raises(ValueError, match="level_start_index"):
        ms_deform_attn(value, ss, start + 1, locs, attn)
    with pytest.raises(ValueError, match="sum to"):
        ms_deform_attn(value[:, :-1], ss, start, locs, attn)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn(value, ss, start, locs, attn[..., :1])
    out = ms_deform_attn(value[:0], ss, start, locs[:0], attn[:0])
    assert out.shape == (0, locs.shape[1], value.shape[2] * value.shape[3])


def test_reference_ops_are_registered_and_selectable(monkeypatch):
    from bupose.core.ops import clear_op_cache, selected_implementation

    for name, fn in (("deform_conv2d", deform_conv2d), ("ms_deform_attn", ms_deform_attn)):
        assert "reference" in [c.spec.implementation for c in op_choices(name)]
        monkeypatch.setenv("BUPOSE_OPS", "reference")
        clear_op_cache()
        assert get_op(name, "cpu") is fn
        assert selected_implementation(name, "cpu") == "reference"
        monkeypatch.delenv("BUPOSE_OPS")
        clear_op_cache()
