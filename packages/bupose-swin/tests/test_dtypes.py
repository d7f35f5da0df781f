"""channels_last and CPU bfloat16 autocast (eval and a training step) on Swin-T, small input."""

from __future__ import annotations

import pytest
import torch

from bupose.core.model import build_backbone


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@pytest.fixture(scope="module")
def model_and_reference():
    torch.manual_seed(0)
    model = build_backbone("swin_t").eval()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x)
    return model, x, ref


def test_outputs_are_contiguous_for_contiguous_input(model_and_reference) -> None:
    _, _, ref = model_and_reference
    assert all(v.is_contiguous() for v in ref.values())


def test_channels_last_matches_contiguous(model_and_reference) -> None:
    model, x, ref = model_and_reference
    model.to(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            out = model(x.to(memory_format=torch.channels_last))
    finally:
        model.to(memory_format=torch.contiguous_format)
    for name, r in ref.items():
        assert out[name].is_contiguous(memory_format=torch.channels_last), name
        assert _rel_err(out[name], r) < 1e-5, name


def test_bf16_autocast_close_to_fp32(model_and_reference) -> None:
    model, x, ref = model_and_reference
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    for name, r in ref.items():
        assert out[name].dtype == torch.bfloat16, name
        assert torch.isfinite(out[name]).all()
        err = _rel_err(out[name], r)
        assert err < 5e-2, f"{name}: relative error {err:.3g} under bf16 autocast"


def test_bf16_autocast_training_step() -> None:
    torch.manual_seed(0)
    model = build_backbone("swin_t", drop_path_rate=0.0).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 64))
        loss = sum(o.float().square().mean() for o in out.values())
    loss.backward()
    for p in (
        model.layers[0].blocks[1].attn.relative_position_bias_table,
        model.layers[3].blocks[1].mlp.fc2.weight,
    ):
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


def test_a_model_cast_to_bf16_runs_in_bf16() -> None:
    torch.manual_seed(0)
    model = build_backbone("swin_t").eval().to(torch.bfloat16)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 56, dtype=torch.bfloat16))
    assert all(v.dtype == torch.bfloat16 and torch.isfinite(v).all() for v in out.values())
