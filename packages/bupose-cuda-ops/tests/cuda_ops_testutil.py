"""Shared test helpers: the implementations under test and input makers.

Golden fixtures under data/golden/ are byte-for-byte copies from the shared golden folder:
``grouppose/msda_core.pt`` (GroupPose), ``dekr/forward_heads_w32_coco.pt`` (DEKR) and ``recipe.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bupose.core.ops import reference

DATA = Path(__file__).parent / "data" / "golden"

# (implementation, device): the reference and C++ on CPU everywhere; on a GPU the reference and CUDA.
IMPLEMENTATIONS = [
    pytest.param(("reference", "cpu"), id="reference-cpu"),
    pytest.param(("cpp", "cpu"), id="cpp-cpu"),
    pytest.param(("reference", "cuda"), id="reference-cuda", marks=pytest.mark.gpu),
    pytest.param(("cuda", "cuda"), id="cuda-cuda", marks=pytest.mark.gpu),
]
COMPILED = [p for p in IMPLEMENTATIONS if p.values[0][0] != "reference"]


def get_impl(op: str, implementation: str) -> Callable[..., torch.Tensor]:
    """The function of ``op`` for ``implementation`` (failing loudly when it cannot load)."""
    if implementation == "reference":
        return getattr(reference, op)
    from bupose.cuda_ops import availability, functions

    check = availability.cpp_available if implementation == "cpp" else availability.cuda_available
    ok, reason = check()
    if not ok:
        pytest.fail(f"{op}/{implementation} is unavailable: {reason}")
    return getattr(functions, f"{op}_{implementation}")


def dcn_inputs(
    g: torch.Generator,
    *,
    b: int = 2,
    c_in: int = 6,
    c_out: int = 4,
    hw: tuple[int, int] = (9, 11),
    kernel: tuple[int, int] = (3, 3),
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    offset_groups: int = 1,
    offset_scale: float = 2.0,
    mask: bool = False,
    bias: bool = True,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Random deform_conv2d arguments (keyword dict for the op)."""
    kh, kw = kernel
    ho = (hw[0] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (hw[1] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    fan_in = c_in // groups * kh * kw
    return {
        "input": torch.randn(b, c_in, *hw, generator=g).to(dtype),
        "offset": (torch.randn(b, 2 * offset_groups * kh * kw, ho, wo, generator=g) * offset_scale).to(dtype),
        "weight": (torch.randn(c_out, c_in // groups, kh, kw, generator=g) / fan_in**0.5).to(dtype),
        "bias": torch.randn(c_out, generator=g).to(dtype) if bias else None,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "mask": torch.rand(b, offset_groups * kh * kw, ho, wo, generator=g).to(dtype) if mask else None,
    }


def msda_inputs(
    g: torch.Generator,
    *,
    n: int = 2,
    lq: int = 7,
    m: int = 3,
    d: int = 4,
    shapes: tuple[tuple[int, int], ...] = ((6, 7), (3, 4), (1, 2)),
    points: int = 3,
    lo: float = -0.15,
    hi: float = 1.15,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Random ms_deform_attn arguments (keyword dict for the op)."""
    ss = torch.tensor(shapes, dtype=torch.long)
    areas = ss[:, 0] * ss[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    levels = len(shapes)
    attn = torch.rand(n, lq, m, levels * points, generator=g).softmax(-1).view(n, lq, m, levels, points)
    return {
        "value": torch.randn(n, int(areas.sum()), m, d, generator=g).to(dtype),
        "spatial_shapes": ss,
        "level_start_index": starts,
        "sampling_locations": (lo + (hi - lo) * torch.rand(n, lq, m, levels, points, 2, generator=g)).to(
            dtype
        ),
        "attention_weights": attn.to(dtype),
    }


def to_device(args: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
