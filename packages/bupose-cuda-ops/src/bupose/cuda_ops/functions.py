"""The compiled ops as autograd Functions, with core's reference signatures.

``deform_conv2d_{cpp,cuda}`` and ``ms_deform_attn_{cpp,cuda}`` take the same arguments and give
the same results as ``bupose.core.ops.reference.deform_conv2d`` / ``ms_deform_attn`` (first-order
gradients; double backward is not supported). float32 and float64 run natively; other floating
dtypes (half, bfloat16) are computed in float32 and cast back. During ONNX export,
``deform_conv2d`` defers to the reference, which exports as the standard ``DeformConv``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from bupose.core.ops import reference

from .availability import load_extension

__all__ = ["deform_conv2d_cpp", "deform_conv2d_cuda", "ms_deform_attn_cpp", "ms_deform_attn_cuda"]

_COLUMN_BUDGET = 1 << 26
"""Most column-buffer elements held at once; larger batches are processed in chunks."""

_DEVICE_OF = {"cpp": "cpu", "cuda": "cuda"}


def _batch_chunk(channels: int, taps: int, length: int) -> int:
    return max(1, _COLUMN_BUDGET // max(1, channels * taps * length))


class _DeformConv2d(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        ext: Any,
        params: tuple[int, ...],
        groups: int,
        input: torch.Tensor,
        offset: torch.Tensor,
        mask: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor:
        kh, kw = params[0], params[1]
        b, c_in = input.shape[:2]
        c_out = weight.shape[0]
        ho, wo = offset.shape[2:]
        length = ho * wo
        wmat = weight.reshape(groups, c_out // groups, (c_in // groups) * kh * kw)
        out = input.new_empty(b, groups, c_out // groups, length)
        step = _batch_chunk(c_in, kh * kw, length)
        has_mask = mask.numel() > 0
        # One chunk and a weight gradient to come: keep the columns instead of recomputing them.
        ctx.cols = None
        keep = step >= b and ctx.needs_input_grad[6]
        for s in range(0, b, step):
            e = min(b, s + step)
            cols = ext.dcn_im2col(input[s:e], offset[s:e], mask[s:e] if has_mask else mask, *params)
            torch.matmul(wmat, cols.view(e - s, groups, -1, length), out=out[s:e])
            if keep:
                ctx.cols = cols
        out = out.view(b, c_out, ho, wo)
        if bias.numel() > 0:
            out = out + bias.view(1, -1, 1, 1)
        ctx.ext, ctx.params, ctx.groups, ctx.has_bias = ext, params, groups, bias.numel() > 0
        ctx.save_for_backward(input, offset, mask, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, offset, mask, weight = ctx.saved_tensors
        ext, params, groups = ctx.ext, ctx.params, ctx.groups
        kh, kw = params[0], params[1]
        b, c_in = input.shape[:2]
        c_out = weight.shape[0]
        length = offset.shape[2] * offset.shape[3]
        has_mask = mask.numel() > 0
        need_input, need_offset, need_mask, need_weight, need_bias = ctx.needs_input_grad[3:8]
        grad_out = grad_out.contiguous().view(b, groups, c_out // groups, length)
        wmat = weight.reshape(groups, c_out // groups, (c_in // groups) * kh * kw)
        grad_input = torch.zeros_like(input) if need_input else None
        grad_offset = torch.zeros_like(offset) if need_offset else None
        grad_mask = torch.zeros_like(mask) if need_mask and has_mask else None
        grad_wmat = torch.zeros_like(wmat) if need_weight else None
        step = _batch_chunk(c_in, kh * kw, length)
        for s in range(0, b, step):
            e = min(b, s + step)
            go = grad_out[s:e]
            msk = mask[s:e] if has_mask else mask
            if need_input or need_offset or need_mask:
                grad_cols = torch.matmul(wmat.transpose(1, 2), go).contiguous()
                if need_input:
                    assert grad_input is not None
                    grad_input[s:e] = ext.dcn_col2im(grad_cols, offset[s:e], msk, input[s:e], *params)
                if need_offset or (need_mask and has_mask):
                    g_off, g_mask = ext.dcn_col2im_coord(grad_cols, input[s:e], offset[s:e], msk, *params)
                    if grad_offset is not None:
                        grad_offset[s:e] = g_off
                    if grad_mask is not None:
                        grad_mask[s:e] = g_mask
            if grad_wmat is not None:
                cols = ctx.cols if ctx.cols is not None else ext.dcn_im2col(input[s:e], offset[s:e], msk, *params)
                cols = cols.view(e - s, groups, -1, length)
                grad_wmat += torch.matmul(go, cols.transpose(-1, -2)).sum(0)
        ctx.cols = None
        grad_weight = grad_wmat.view_as(weight) if grad_wmat is not None else None
        grad_bias = grad_out.sum(dim=(0, 3)).reshape(-1) if need_bias and ctx.has_bias else None
        return None, None, None, grad_input, grad_offset, grad_mask, grad_weight, grad_bias


def _compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 when every tensor is float64, else float32 (half/bf16 and mixed inputs, as under autocast)."""
    dtypes = {t.dtype for t in tensors if t is not None}
    bad = sorted(str(d) for d in dtypes if not d.is_floating_point)
    if bad:
        raise TypeError(f"expected floating-point tensors, got {', '.join(bad)}")
    return torch.float64 if dtypes == {torch.float64} else torch.float32


def _check_device(kind: str, op: str, *tensors: torch.Tensor | None) -> None:
    want = _DEVICE_OF[kind]
    for t in tensors:
        if t is not None and t.device.type != want:
            raise ValueError(f"{op}/{kind} runs on {want} tensors, got a tensor on {t.device}")


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _deform_conv2d_nhwc(
    ext: Any,
    params: tuple[int, ...],
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """Inference (no gradient wanted) on input whose channels are adjacent in memory (channels-last,
    or a channel slice of a channels-last map: no copy): the (O, K*C) weights times the (B, L, K*C)
    columns, read transposed, give the (B, O, L) output. 1.2x faster on DEKR's head than the
    (B, C, K, L) columns, which the training path keeps for its backward."""
    b = input.shape[0]
    c_out, c_in, kh, kw = weight.shape
    ho, wo = offset.shape[2:]
    cols = ext.dcn_im2col_nhwc(input, offset, mask, *params)  # (B, L, K, C)
    wmat = weight.permute(0, 2, 3, 1).reshape(c_out, kh * kw * c_in)  # the columns' (k, c) order
    out = torch.matmul(wmat, cols.view(b, ho * wo, kh * kw * c_in).transpose(1, 2))  # (B, O, L)
    if bias is not None and bias.numel() > 0:
        out += bias.to(out.dtype).view(1, -1, 1)
    return out.view(b, c_out, ho, wo)


def _deform_conv2d(
    kind: str,
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
    mask: torch.Tensor | None,
) -> torch.Tensor:
    if torch.onnx.is_in_onnx_export():
        return reference.deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)
    info = reference.check_deform_conv2d_args(input, offset, weight, bias, stride, padding, dilation, mask)
    _check_device(kind, "deform_conv2d", input, offset, weight, bias, mask)
    dtype = _compute_dtype(input, offset, weight, bias, mask)
    ext = load_extension(kind)
    (sh, sw), (ph, pw), (dh, dw) = info["stride"], info["padding"], info["dilation"]  # type: ignore[misc]
    params = (weight.shape[2], weight.shape[3], sh, sw, ph, pw, dh, dw)
    empty = input.new_empty(0, dtype=dtype)

    def prep(t: torch.Tensor | None) -> torch.Tensor:
        return empty if t is None else t.to(dtype).contiguous()

    if input.shape[0] == 0:
        return reference.deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)
    if kind == "cpp" and int(info["groups"]) == 1 and not _needs_grad(input, offset, weight, bias, mask):
        x = input.to(dtype)
        if x.stride(1) != 1:
            x = x.contiguous(memory_format=torch.channels_last)
        return _deform_conv2d_nhwc(ext, params, x, prep(offset), prep(mask), prep(weight), bias).to(input.dtype)
    out = _DeformConv2d.apply(
        ext,
        params,
        int(info["groups"]),
        prep(input),
        prep(offset),
        prep(mask),
        prep(weight),
        prep(bias),  # type: ignore[arg-type]
    )
    return out.to(input.dtype)


def deform_conv2d_cpp(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable convolution on CPU tensors with the C++ kernels (reference semantics)."""
    return _deform_conv2d("cpp", input, offset, weight, bias, stride, padding, dilation, mask)


def deform_conv2d_cuda(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable convolution on CUDA tensors with the CUDA kernels (reference semantics)."""
    return _deform_conv2d("cuda", input, offset, weight, bias, stride, padding, dilation, mask)


class _MsDeformAttn(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        ext: Any,
        value: torch.Tensor,
        shapes: torch.Tensor,
        starts: torch.Tensor,
        loc: torch.Tensor,
        attn: torch.Tensor,
    ) -> torch.Tensor:
        ctx.ext = ext
        ctx.save_for_backward(value, shapes, starts, loc, attn)
        return ext.msda_forward(value, shapes, starts, loc, attn)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        value, shapes, starts, loc, attn = ctx.saved_tensors
        g_value, g_loc, g_attn = ctx.ext.msda_backward(
            value, shapes, starts, loc, attn, grad_out.contiguous()
        )
        need = ctx.needs_input_grad
        return (
            None,
            g_value if need[1] else None,
            None,
            None,
            g_loc if need[4] else None,
            g_attn if need[5] else None,
        )


def _ms_deform_attn(
    kind: str,
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    reference.check_ms_deform_attn_args(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )
    _check_device(kind, "ms_deform_attn", value, sampling_locations, attention_weights)
    if value.shape[0] == 0 or sampling_locations.shape[1] == 0:
        return reference.ms_deform_attn(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights
        )
    dtype = _compute_dtype(value, sampling_locations, attention_weights)
    ext = load_extension(kind)
    device = value.device
    out = _MsDeformAttn.apply(
        ext,
        value.to(dtype).contiguous(),
        spatial_shapes.to(device=device, dtype=torch.long).contiguous(),
        level_start_index.to(device=device, dtype=torch.long).contiguous(),
        sampling_locations.to(dtype).contiguous(),
        attention_weights.to(dtype).contiguous(),
    )
    return out.to(value.dtype)


def ms_deform_attn_cpp(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention on CPU tensors with the C++ kernels (reference semantics)."""
    return _ms_deform_attn(
        "cpp", value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )


def ms_deform_attn_cuda(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention on CUDA tensors with the CUDA kernels (reference semantics)."""
    return _ms_deform_attn(
        "cuda", value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )
