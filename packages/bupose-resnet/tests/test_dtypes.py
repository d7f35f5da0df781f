"""channels_last and CPU bfloat16 autocast (eval and a training step), trainable and frozen norms."""

from __future__ import annotations

import pytest
import torch

from bupose.core.model import build_backbone


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@pytest.fixture(
    scope="module", params=[{}, {"norm": "frozen_bn", "frozen_stages": 1}], ids=["bn", "frozen_bn"]
)
def model_and_reference(request):
    torch.manual_seed(0)
    model = build_backbone("resnet18", zero_init_residual=False, **request.param).eval()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x)
    return model, x, ref


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
        out = model(x.to(memory_format=torch.channels_last))
    for name, r in ref.items():
        assert out[name].dtype == torch.bfloat16, name
        assert torch.isfinite(out[name]).all()
        err = _rel_err(out[name], r)
        assert err < 5e-2, f"{name}: relative error {err:.3g} under bf16 autocast"


@pytest.mark.parametrize("kwargs", [{}, {"norm": "frozen_bn", "frozen_stages": 1}], ids=["bn", "frozen_bn"])
def test_bf16_autocast_training_step(kwargs) -> None:
    torch.manual_seed(0)
    model = build_backbone("resnet18", zero_init_residual=False, **kwargs).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last))
        loss = sum(o.float().square().mean() for o in out.values())
    loss.backward()
    grad = model.layer4[1].conv2.weight.grad
    assert (
        grad is not None
        and grad.dtype == torch.float32
        and torch.isfinite(grad).all()
        and grad.abs().sum() > 0
    )
