"""channels_last, autocast (bf16 / fp16 on CPU) and torch.compile.

Inductor compilation works (checked by hand: max|diff| 6e-6 against eager for hrnet_w18_small)
but takes minutes on a 2-core CPU, so the test compiles with the ``eager`` backend and
``fullgraph=True``: it proves the forward is captured in one graph (no graph breaks) and that the
captured graph computes the same values.
"""

from __future__ import annotations

import pytest
import torch

from bupose.core.model import build_backbone


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return build_backbone("hrnet_w18_small").eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def reference(small, x) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return small(x)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def test_channels_last_matches_contiguous(small, x, reference) -> None:
    model = small.to(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            out = model(x.to(memory_format=torch.channels_last))
    finally:
        small.to(memory_format=torch.contiguous_format)
    assert out["b0"].is_contiguous(memory_format=torch.channels_last)
    for name, ref in reference.items():
        assert _rel_err(out[name], ref) < 1e-5, name


def test_channels_last_training_step() -> None:
    torch.manual_seed(0)
    model = build_backbone("hrnet_w18_small").train().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last)
    out = model(x)
    out["concat"].square().mean().backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0
    assert model.stage4[0].fuse_layers[0][3][0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("dtype", "tol"), [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)])
def test_cpu_autocast(small, x, reference, dtype, tol) -> None:
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        out = small(x.to(memory_format=torch.channels_last))
    assert set(out) == set(reference)
    for name, ref in reference.items():
        assert out[name].dtype == dtype, name
        assert torch.isfinite(out[name]).all()
        err = _rel_err(out[name], ref)
        assert err < tol, f"{name}: relative error {err:.3g} under {dtype} autocast"


def test_bf16_autocast_backward() -> None:
    torch.manual_seed(0)
    model = build_backbone("hrnet_w18_small").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 64))
        loss = out["concat"].float().square().mean()
    loss.backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.dtype == torch.float32
    assert torch.isfinite(model.conv1.weight.grad).all()


def test_torch_compile_fullgraph(small, x, reference) -> None:
    torch._dynamo.reset()
    compiled = torch.compile(small, backend="eager", fullgraph=True)
    with torch.no_grad():
        out = compiled(x)
    for name, ref in reference.items():
        torch.testing.assert_close(out[name], ref, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
