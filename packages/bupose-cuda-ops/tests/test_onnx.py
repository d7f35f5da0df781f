"""ONNX export: deform_conv2d becomes the standard DeformConv node (opset 19), checked numerically
with onnx's reference evaluator. Skipped when the ``onnx`` package is not installed."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from cuda_ops_testutil import dcn_inputs, get_impl

onnx = pytest.importorskip("onnx")
from onnx.reference import ReferenceEvaluator  # noqa: E402


class _Block(torch.nn.Module):
    """A conv predicting offsets (and a mask) feeding a deformable conv, as in DEKR's AdaptBlock."""

    def __init__(self, fn, c: int, kernel: int, groups: int, og: int, use_mask: bool, bias: bool) -> None:
        super().__init__()
        self.fn = fn
        taps = kernel * kernel
        self.offset_conv = torch.nn.Conv2d(c, 2 * og * taps, 3, padding=1)
        self.mask_conv = torch.nn.Conv2d(c, og * taps, 3, padding=1) if use_mask else None
        g = torch.Generator().manual_seed(21)
        self.weight = torch.nn.Parameter(torch.randn(c, c // groups, kernel, kernel, generator=g) * 0.3)
        self.bias = torch.nn.Parameter(torch.randn(c, generator=g)) if bias else None
        self.pad = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.offset_conv(x) * 2
        mask = torch.sigmoid(self.mask_conv(x)) if self.mask_conv is not None else None
        return self.fn(x, offset, self.weight, self.bias, 1, self.pad, 1, mask)


def _export(module: torch.nn.Module, x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, opset_version=19, dynamo=False, input_names=["x"])
    return buf.getvalue()


@pytest.mark.parametrize("implementation", ["reference", "cpp"])
@pytest.mark.parametrize(
    ("groups", "og", "use_mask", "bias"),
    [(1, 1, False, False), (1, 1, False, True), (2, 2, True, True), (1, 2, True, False)],
)
def test_deform_conv2d_exports_as_deformconv(implementation, groups, og, use_mask, bias):
    torch.manual_seed(0)
    module = _Block(get_impl("deform_conv2d", implementation), 4, 3, groups, og, use_mask, bias).eval()
    x = torch.randn(1, 4, 5, 6)
    model = onnx.load_from_string(_export(module, x))
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DeformConv") == 1, ops
    assert "GatherElements" not in ops and "Gather" not in ops
    node = next(n for n in model.graph.node if n.op_type == "DeformConv")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["group"] == groups and attrs["offset_group"] == og
    assert list(attrs["kernel_shape"]) == [3, 3] and list(attrs["pads"]) == [1, 1, 1, 1]
    (got,) = ReferenceEvaluator(model).run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = module(x)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-4)


def test_eager_path_is_unchanged_outside_export():
    args = dcn_inputs(torch.Generator().manual_seed(22))
    assert not torch.onnx.is_in_onnx_export()
    out = get_impl("deform_conv2d", "reference")(**args)
    assert out.grad_fn is None or "DeformConv" not in type(out.grad_fn).__name__
