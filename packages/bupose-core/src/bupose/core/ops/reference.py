"""Pure-PyTorch reference implementations of the named ops.

They run on any device, are differentiable by autograd (any order) and define the semantics the
compiled implementations (``bupose-cuda-ops``) must reproduce:

- :func:`deform_conv2d`: deformable convolution with torchvision's conventions (DCNv1, and DCNv2
  when a modulation mask is given);
- :func:`ms_deform_attn`: Deformable-DETR's multi-scale deformable attention core.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "check_deform_conv2d_args",
    "check_ms_deform_attn_args",
    "deform_conv2d",
    "deform_conv2d_output_size",
    "ms_deform_attn",
    "pair",
]


def pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """``value`` as a (height, width) pair of ints; a clear error otherwise."""
    if isinstance(value, int):
        return value, value
    items = tuple(value)
    if len(items) != 2 or not all(isinstance(v, int) for v in items):
        raise ValueError(f"deform_conv2d: {name} must be an int or a pair of ints, got {value!r}")
    return items[0], items[1]


def deform_conv2d_output_size(
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int]:
    """Output (height, width) of a (deformable) convolution, as ``F.conv2d`` computes it."""
    out = tuple(
        (size[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)
    )
    return out[0], out[1]


def check_deform_conv2d_args(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
    mask: torch.Tensor | None,
) -> dict[str, int | tuple[int, int]]:
    """Validate ``deform_conv2d`` arguments; return the derived sizes and groups.

    Raises ``ValueError`` naming the argument and the expected shape.
    """
    st, pd, dl = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    if min(st) < 1 or min(dl) < 1 or min(pd) < 0:
        raise ValueError(
            f"deform_conv2d: stride and dilation must be >= 1 and padding >= 0, got "
            f"stride={st}, padding={pd}, dilation={dl}"
        )
    if input.dim() != 4:
        raise ValueError(f"deform_conv2d: input must be (B, C, H, W), got shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise ValueError(
            f"deform_conv2d: weight must be (C_out, C_in/groups, kh, kw), got shape {tuple(weight.shape)}"
        )
    b, c_in, h, w = input.shape
    c_out, c_per_group, kh, kw = weight.shape
    if c_per_group == 0 or c_in % c_per_group != 0:
        raise ValueError(
            f"deform_conv2d: input has {c_in} channels, not a multiple of weight.shape[1]={c_per_group}"
        )
    groups = c_in // c_per_group
    if c_out % groups != 0:
        raise ValueError(f"deform_conv2d: weight.shape[0]={c_out} is not divisible by groups={groups}")
    taps = kh * kw
    if offset.dim() != 4 or offset.shape[0] != b or offset.shape[1] % (2 * taps) != 0 or offset.shape[1] == 0:
        raise ValueError(
            f"deform_conv2d: offset must be (B={b}, 2*offset_groups*{kh}*{kw}, H_out, W_out), "
            f"got shape {tuple(offset.shape)}"
        )
    offset_groups = offset.shape[1] // (2 * taps)
    if c_in % offset_groups != 0:
        raise ValueError(
            f"deform_conv2d: input channels {c_in} not divisible by offset groups {offset_groups}"
        )
    ho, wo = deform_conv2d_output_size((h, w), (kh, kw), st, pd, dl)
    if ho <= 0 or wo <= 0:
        raise ValueError(
            f"deform_conv2d: output size ({ho}, {wo}) is empty for input ({h}, {w}), kernel ({kh}, {kw}), "
            f"stride {st}, padding {pd}, dilation {dl}"
        )
    if tuple(offset.shape[2:]) != (ho, wo):
        raise ValueError(
            f"deform_conv2d: offset spatial size {tuple(offset.shape[2:])} != output size {(ho, wo)}"
        )
    if mask is not None and tuple(mask.shape) != (b, offset_groups * taps, ho, wo):
        raise ValueError(
            f"deform_conv2d: mask must be (B, offset_groups*kh*kw, H_out, W_out) = "
            f"{(b, offset_groups * taps, ho, wo)}, got {tuple(mask.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"deform_conv2d: bias must be ({c_out},), got {tuple(bias.shape)}")
    return {
        "groups": groups,
        "offset_groups": offset_groups,
        "out_size": (ho, wo),
        "stride": st,
        "padding": pd,
        "dilation": dl,
    }


def _bilinear_gather(
    planes: torch.Tensor, y: torch.Tensor, x: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Sample ``planes`` (G, C, H*W) bilinearly at pixel coordinates ``y``, ``x`` (G, P).

    torchvision's rule: a point outside (-1, H) x (-1, W) gives 0; corners outside the map count as
    0. Returns (G, C, P).
    """
    g, c, _ = planes.shape
    inside = (y > -1) & (y < height) & (x > -1) & (x < width)
    zero = torch.zeros((), dtype=y.dtype, device=y.device)
    y = torch.where(inside, y, zero)
    x = torch.where(inside, x, zero)
    y0 = torch.floor(y)
    x0 = torch.floor(x)
    ly = y - y0
    lx = x - x0
    hy = 1 - ly
    hx = 1 - lx
    y0i = y0.long()
    x0i = x0.long()
    # A zero pixel appended at index H*W stands for every corner outside the map.
    padded = torch.cat([planes, planes.new_zeros(g, c, 1)], dim=2)
    outside = height * width
    out = None
    for dy, dx, wgt in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
        yy = y0i + dy
        xx = x0i + dx
        ok = inside & (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        idx = torch.where(ok, yy * width + xx, outside)
        vals = torch.gather(padded, 2, idx.unsqueeze(1).expand(g, c, idx.shape[1]))
        term = vals * wgt.unsqueeze(1)
        out = term if out is None else out + term
    assert out is not None
    return out


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable 2-D convolution (torchvision ``deform_conv2d`` semantics).

    Args:
        input: (B, C_in, H, W).
        offset: (B, 2*offset_groups*kh*kw, H_out, W_out); per offset group and kernel tap k
            (row-major over the kernel) the pair (dy_k, dx_k) at channels (2k, 2k+1).
        weight: (C_out, C_in/groups, kh, kw); ``groups`` is inferred from ``weight.shape[1]``.
        bias: (C_out,) or None.
        stride, padding, dilation: ints or (h, w) pairs, as in ``F.conv2d``.
        mask: None (DCNv1) or (B, offset_groups*kh*kw, H_out, W_out) modulation (DCNv2).

    Returns:
        (B, C_out, H_out, W_out). Samples are bilinear at pixel-index coordinates; points outside
        (-1, H) x (-1, W) contribute zero.
    """
    info = check_deform_conv2d_args(input, offset, weight, bias, stride, padding, dilation, mask)
    if torch.onnx.is_in_onnx_export():
        if bias is None and mask is not None:
            bias = weight.new_zeros(weight.shape[0])
        # Plain ints: under the tracer shapes are traced values, but ONNX attributes are constants.
        ints = {
            k: tuple(int(v) for v in val) if isinstance(val, tuple) else int(val) for k, val in info.items()
        }
        return _DeformConv2dOnnx.apply(
            input,
            offset,
            weight,
            bias,
            mask,
            ints["stride"],
            ints["padding"],
            ints["dilation"],
            ints["groups"],
            ints["offset_groups"],
            (int(weight.shape[2]), int(weight.shape[3])),
        )
    return _deform_conv2d(input, offset, weight, bias, mask, info)


def _deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor | None,
    info: dict[str, int | tuple[int, int]],
) -> torch.Tensor:
    groups = int(info["groups"])  # type: ignore[arg-type]
    og = int(info["offset_groups"])  # type: ignore[arg-type]
    ho, wo = info["out_size"]  # type: ignore[misc]
    (sh, sw), (ph, pw), (dh, dw) = info["stride"], info["padding"], info["dilation"]  # type: ignore[misc]
    b, c_in, h, w = input.shape
    c_out, _, kh, kw = weight.shape
    taps = kh * kw
    length = ho * wo
    if b == 0:
        out = input.new_zeros(0, c_out, ho, wo) + weight.sum() * 0
        return out if bias is None else out + bias.view(1, -1, 1, 1)

    dtype, device = input.dtype, input.device
    base_y = (torch.arange(ho, device=device, dtype=dtype) * sh - ph).view(1, ho, 1)
    base_x = (torch.arange(wo, device=device, dtype=dtype) * sw - pw).view(1, 1, wo)
    tap_y = (torch.arange(kh, device=device, dtype=dtype) * dh).repeat_interleave(kw).view(taps, 1, 1)
    tap_x = (torch.arange(kw, device=device, dtype=dtype) * dw).repeat(kh).view(taps, 1, 1)
    grid_y = (base_y + tap_y).expand(taps, ho, wo)
    grid_x = (base_x + tap_x).expand(taps, ho, wo)

    off = offset.reshape(b, og, taps, 2, ho, wo)
    y = (grid_y + off[:, :, :, 0]).reshape(b * og, taps * length)
    x = (grid_x + off[:, :, :, 1]).reshape(b * og, taps * length)
    planes = input.reshape(b * og, c_in // og, h * w)
    cols = _bilinear_gather(planes, y, x, h, w)  # (B*og, C_in/og, K*L)
    if mask is not None:
        cols = cols * mask.reshape(b * og, 1, taps * length)
    cols = cols.reshape(b, groups, (c_in // groups) * taps, length)
    wmat = weight.reshape(groups, c_out // groups, (c_in // groups) * taps)
    out = torch.matmul(wmat.unsqueeze(0), cols).reshape(b, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _is_none(value: object) -> bool:
    if value is None:
        return True
    node = getattr(value, "node", None)
    return bool(node is not None and node().mustBeNone())


class _DeformConv2dOnnx(torch.autograd.Function):
    """Runs the reference; exports as the standard ONNX ``DeformConv`` (opset >= 19)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: object,
        input: torch.Tensor,
        offset: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        mask: torch.Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
        offset_groups: int,
        kernel: tuple[int, int],
    ) -> torch.Tensor:
        # Computed outside the tracer: the traced graph only needs this node (replaced by
        # ``symbolic``), and tracing the reference's body into it breaks the exporter's passes.
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            with torch.no_grad():
                info = check_deform_conv2d_args(input, offset, weight, bias, stride, padding, dilation, mask)
                result = _deform_conv2d(input, offset, weight, bias, mask, info)
        finally:
            torch._C._set_tracing_state(state)
        out = input.new_empty(result.shape)
        torch._C._set_tracing_state(None)
        try:
            out.copy_(result)
        finally:
            torch._C._set_tracing_state(state)
        return out

    @staticmethod
    def symbolic(  # type: ignore[no-untyped-def]
        g, input, offset, weight, bias, mask, stride, padding, dilation, groups, offset_groups, kernel
    ):
        inputs = [input, weight, offset]
        if not _is_none(bias):
            inputs.append(bias)
            if not _is_none(mask):
                inputs.append(mask)
        attrs = {
            "dilations_i": list(dilation),
            "group_i": int(groups),
            "offset_group_i": int(offset_groups),
            "pads_i": [padding[0], padding[1], padding[0], padding[1]],
            "strides_i": list(stride),
            "kernel_shape_i": [int(kernel[0]), int(kernel[1])],
        }
        return g.op("DeformConv", *inputs, **attrs)


def check_ms_deform_attn_args(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> list[tuple[int, int]]:
    """Validate ``ms_deform_attn`` arguments; return the level sizes as (H, W) pairs."""
    if value.dim() != 4:
        raise ValueError(f"ms_deform_attn: value must be (N, S, M, D), got shape {tuple(value.shape)}")
    n, s, m, _ = value.shape
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2 or spatial_shapes.shape[0] == 0:
        raise ValueError(
            f"ms_deform_attn: spatial_shapes must be (L, 2) as (H, W), got {tuple(spatial_shapes.shape)}"
        )
    shapes = [(int(hh), int(ww)) for hh, ww in spatial_shapes.tolist()]
    levels = len(shapes)
    if sum(hh * ww for hh, ww in shapes) != s:
        raise ValueError(
            f"ms_deform_attn: value has S={s} tokens but spatial_shapes {shapes} sum to "
            f"{sum(hh * ww for hh, ww in shapes)}"
        )
    starts = [0]
    for hh, ww in shapes[:-1]:
        starts.append(starts[-1] + hh * ww)
    if level_start_index.dim() != 1 or level_start_index.tolist() != starts:
        raise ValueError(
            f"ms_deform_attn: level_start_index must be {starts} for spatial_shapes {shapes}, "
            f"got {level_start_index.tolist()}"
        )
    loc = sampling_locations
    if (
        loc.dim() != 6
        or loc.shape[0] != n
        or loc.shape[2] != m
        or loc.shape[3] != levels
        or loc.shape[5] != 2
    ):
        raise ValueError(
            f"ms_deform_attn: sampling_locations must be (N={n}, Lq, M={m}, L={levels}, P, 2), "
            f"got {tuple(loc.shape)}"
        )
    if tuple(attention_weights.shape) != tuple(loc.shape[:5]):
        raise ValueError(
            f"ms_deform_attn: attention_weights must be {tuple(loc.shape[:5])} (N, Lq, M, L, P), "
            f"got {tuple(attention_weights.shape)}"
        )
    return shapes


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention core (Deformable DETR semantics).

    Args:
        value: (N, S, M, D), the levels' tokens concatenated, each level row-major.
        spatial_shapes: (L, 2) int64, (H, W) per level.
        level_start_index: (L,) int64, start of each level in S.
        sampling_locations: (N, Lq, M, L, P, 2), normalised (x, y): 0 and 1 are the outer borders
            of the map, x = (i + 0.5) / W is the centre of column i.
        attention_weights: (N, Lq, M, L, P).

    Returns:
        (N, Lq, M*D): per head the attention-weighted sum of bilinear samples (zero outside the map),
        heads concatenated.
    """
    shapes = check_ms_deform_attn_args(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )
    n, _, m, d = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    if n == 0 or lq == 0:
        zero = (value.sum() + sampling_locations.sum() + attention_weights.sum()) * 0
        return value.new_zeros(n, lq, m * d) + zero
    splits = value.split([hh * ww for hh, ww in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for lvl, (hh, ww) in enumerate(shapes):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        v = splits[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, hh, ww)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # (N*M, D, Lq, L, P) weighted by (N*M, 1, Lq, L, P)
    stacked = torch.stack(sampled, dim=-2)
    attn = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, levels, points)
    out = (stacked * attn).sum(dim=(-1, -2)).view(n, m * d, lq)
    return out.transpose(1, 2).contiguous()
