"""``msda_core.pt``: the multi-scale deformable attention core, forward and gradients, with every
registered ``ms_deform_attn`` implementation available here (the reference in core always; the
C++/CUDA ones of bupose-cuda-ops when installed and built). Tolerance abs 1e-5."""

from __future__ import annotations

import _grouppose_golden as _golden
import pytest
import torch

from bupose.core.ops import op_choices, reference

FIX = _golden.fixture("msda_core.pt")
CHOICES = [c for c in op_choices("ms_deform_attn") if c.available and "cpu" in c.spec.devices]


def _args(case: int, grad: bool = False) -> list[torch.Tensor]:
    names = ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")
    out = []
    for n in names:
        t = FIX[f"case{case}/input/{n}"].clone()
        if grad and t.is_floating_point():
            t.requires_grad_(True)
        out.append(t)
    return out


def test_reference_is_registered() -> None:
    assert "reference" in [c.spec.implementation for c in CHOICES]


@pytest.mark.parametrize("choice", CHOICES, ids=lambda c: c.spec.implementation)
@pytest.mark.parametrize("case", [0, 1, 2])
def test_forward(choice, case: int) -> None:
    op = choice.spec.load()
    with torch.no_grad():
        out = op(*_args(case))
    torch.testing.assert_close(out, FIX[f"case{case}/output"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("choice", CHOICES, ids=lambda c: c.spec.implementation)
@pytest.mark.parametrize("case", [1, 2])
def test_gradients(choice, case: int) -> None:
    op = choice.spec.load()
    args = _args(case, grad=True)
    out = op(*args)
    (out * FIX[f"case{case}/input/grad_weight"]).sum().backward()
    for i, name in ((0, "value"), (3, "sampling_locations"), (4, "attention_weights")):
        # abs 1e-5 (the fixture README) and 1e-5 relative: location gradients reach ~70 (one float32 ulp
        # 7.6e-6) and the fixture itself is 6.4e-5 away from the float64 value there, so a kernel that
        # sums in another order than autograd through grid_sample (the C++ op) differs by a few ulps
        torch.testing.assert_close(args[i].grad, FIX[f"case{case}/grad/{name}"], rtol=1e-5, atol=1e-5, msg=name)
    # and it is as accurate as the official float32 computation, measured against float64
    exact = [a.double() if a.is_floating_point() else a for a in _args(case, grad=False)]
    for i in (0, 3, 4):
        exact[i] = exact[i].detach().requires_grad_(True)
    (reference.ms_deform_attn(*exact) * FIX[f"case{case}/input/grad_weight"].double()).sum().backward()
    for i, name in ((0, "value"), (3, "sampling_locations"), (4, "attention_weights")):
        truth = exact[i].grad
        ours = float((args[i].grad.double() - truth).abs().max())
        official = float((FIX[f"case{case}/grad/{name}"].double() - truth).abs().max())
        assert ours <= 2 * official + 1e-6, (name, ours, official)


def test_module_uses_the_op_lookup(monkeypatch) -> None:
    """MSDeformAttn goes through core's lookup (BUPOSE_OPS=reference forces the reference)."""
    from bupose.core.ops import clear_op_cache, selected_implementation
    from bupose.grouppose.transformer import MSDeformAttn

    monkeypatch.setenv("BUPOSE_OPS", "reference")
    clear_op_cache()
    try:
        assert selected_implementation("ms_deform_attn", "cpu") == "reference"
        attn = MSDeformAttn(32, n_levels=2, n_heads=2, n_points=2)
        shapes = torch.tensor([[4, 5], [2, 3]])
        value = torch.randn(1, 26, 32)
        ref = torch.rand(1, 7, 2, 2)
        out = attn(torch.randn(1, 7, 32), ref, value, shapes, torch.tensor([0, 20]))
        assert out.shape == (1, 7, 32) and torch.isfinite(out).all()
    finally:
        clear_op_cache()


def test_module_runs_the_op_in_float32_under_autocast() -> None:
    """As the official op casts fp16 inputs: under autocast the sampling runs in fp32 and the
    projections in the autocast dtype; the result stays close to the fp32 one."""
    from bupose.grouppose.transformer import MSDeformAttn

    torch.manual_seed(0)
    attn = MSDeformAttn(32, n_levels=2, n_heads=2, n_points=2).eval()
    shapes, starts = torch.tensor([[4, 5], [2, 3]]), torch.tensor([0, 20])
    q, value, ref = torch.randn(1, 7, 32), torch.randn(1, 26, 32), torch.rand(1, 7, 2, 2)
    with torch.no_grad():
        full = attn(q, ref, value, shapes, starts)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = attn(q, ref, value, shapes, starts)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), full, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize(("heads", "points"), [(8, 4), (4, 2), (2, 1)])
def test_module_sampling_locations_are_the_per_level_quotients(monkeypatch, heads: int, points: int) -> None:
    """MSDeformAttn divides each sampling offset by its level's (W, H) along a flat vector; the
    locations handed to the op are exactly ``reference + offset / (W_l, H_l)`` broadcast per (head,
    level, point), on non-square levels, with and without gradients."""
    from bupose.grouppose.transformer import MSDeformAttn

    torch.manual_seed(0)
    shapes = [(6, 5), (3, 7), (2, 1), (1, 3)]
    m = MSDeformAttn(32, len(shapes), heads, points)
    torch.nn.init.normal_(m.sampling_offsets.weight, std=0.5)
    n, lq = 2, 11
    s = sum(h * w for h, w in shapes)
    query = torch.randn(n, lq, 32, requires_grad=True)
    value = torch.randn(n, s, 32)
    ref = torch.rand(n, lq, len(shapes), 2)
    spatial = torch.tensor(shapes, dtype=torch.long)
    starts = torch.tensor([0, 30, 51, 53], dtype=torch.long)
    seen: list[torch.Tensor] = []

    def spy(value, spatial_shapes, level_start_index, locations, weights):
        seen.append(locations)
        return value.new_zeros(value.shape[0], locations.shape[1], value.shape[2] * value.shape[3]) + locations.sum()

    monkeypatch.setattr("bupose.grouppose.transformer.get_op", lambda name, device: spy)
    m(query, ref, value, spatial, starts).sum().backward()
    offsets = m.sampling_offsets(query).view(n, lq, heads, len(shapes), points, 2)
    wh = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float32)
    expected = ref[:, :, None, :, None, :] + offsets / wh[None, None, None, :, None, :]
    assert seen[0].shape == (n, lq, heads, len(shapes), points, 2)
    assert torch.equal(seen[0], expected)
    assert query.grad is not None and torch.isfinite(query.grad).all() and query.grad.abs().sum() > 0
