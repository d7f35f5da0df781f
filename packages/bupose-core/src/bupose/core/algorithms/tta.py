"""Test-time augmentation: horizontal flip of inputs and outputs, averaging and up-sampling maps.

Maps are (..., C, H, W) tensors; a flip index is a permutation of the C channels (``flip_index[c]``
is the channel that holds channel ``c``'s mirror part, e.g. the left wrist for the right wrist).
Offset fields are (..., 2J, H, W) laid out (dx0, dy0, dx1, dy1, ...).

Method quirks are arguments: DEKR shifts the flipped input 3 px (``shift=3``), LOGO-CAP does not;
flipped predictions are mirrored with ``x' = W - 1 - x`` (``minus_one=True``, DEKR, CenterGroup)
or ``x' = W - x``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "average_maps",
    "bilinear_taps",
    "flip_back",
    "flip_back_offsets",
    "flip_input",
    "mirror_points",
    "negate_dx",
    "resize_maps",
    "up_interpolate",
]


def flip_input(x: torch.Tensor, shift: int = 0) -> torch.Tensor:
    """(..., W) images flipped horizontally, then shifted ``shift`` columns to the left: columns
    ``[0, W - shift)`` take the flipped columns ``[shift, W)``, the last ``shift`` keep their flipped
    values (DEKR's flip test uses ``shift=3``). ``x`` is not modified."""
    xf = torch.flip(x, [-1])
    if shift <= 0 or x.shape[-1] <= shift:
        return xf
    out = xf.clone()
    out[..., :-shift] = xf[..., shift:]
    return out


def flip_back(maps: torch.Tensor, flip_index: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Outputs of a flipped input mapped back: flipped along W and channels re-indexed with
    ``flip_index`` (channel dim -3; ``None`` keeps the channel order)."""
    out = maps.flip(-1)
    if flip_index is not None:
        idx = torch.as_tensor(flip_index, dtype=torch.long, device=maps.device)
        out = out.index_select(-3, idx)
    return out


def negate_dx(offsets: torch.Tensor) -> torch.Tensor:
    """(..., 2J, H, W) offsets with every dx channel (even index) negated (a copy)."""
    if offsets.shape[-3] % 2:
        raise ValueError(f"negate_dx: expected 2J offset channels, got {offsets.shape[-3]}")
    out = offsets.clone()
    out[..., 0::2, :, :] = -out[..., 0::2, :, :]
    return out


def flip_back_offsets(offsets: torch.Tensor, flip_index: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """(..., 2J, H, W) offsets of a flipped input mapped back: flipped along W, joints permuted
    with the J-entry ``flip_index`` (both channels of a joint move together), dx negated
    (LOGO-CAP's flip merge of offset fields)."""
    fi = torch.as_tensor(flip_index, dtype=torch.long, device=offsets.device)
    if offsets.shape[-3] != 2 * fi.numel():
        raise ValueError(f"flip_back_offsets: {offsets.shape[-3]} channels for {fi.numel()} joints")
    pair = torch.stack([2 * fi, 2 * fi + 1], dim=1).reshape(-1)
    return negate_dx(flip_back(offsets, pair))


def mirror_points(
    points: np.ndarray | torch.Tensor, width: float, *, minus_one: bool = True
) -> np.ndarray | torch.Tensor:
    """(..., >=2) points with x mirrored: ``x' = width - 1 - x`` (``minus_one``) or ``width - x``.
    Other columns are kept; returns a copy of the same type and dtype."""
    out = points.clone() if isinstance(points, torch.Tensor) else np.array(points, copy=True)
    x = out[..., 0]
    out[..., 0] = (width - x) - 1 if minus_one else width - x
    return out


def average_maps(maps: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """Mean (or ``weights``-weighted sum) of equally shaped maps."""
    if len(maps) == 0:
        raise ValueError("average_maps needs at least one map")
    if weights is None:
        total = maps[0]
        for m in maps[1:]:
            total = total + m
        return total / len(maps)
    if len(weights) != len(maps):
        raise ValueError(f"average_maps: {len(weights)} weights for {len(maps)} maps")
    return sum((w * m for w, m in zip(weights, maps)), torch.zeros_like(maps[0]))


def up_interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """DEKR's ``up_interpolate``: bilinear (``align_corners=True``) to ``size - k + 1``, then
    replicate-pad ``k - 1`` on the right/bottom, ``k = int(size / input size)``. ``x`` is (B, C, h, w)."""
    h, w = x.shape[-2:]
    kh, kw = int(size[0] / h), int(size[1] / w)
    inter = F.interpolate(x, size=[size[0] - kh + 1, size[1] - kw + 1], align_corners=True, mode="bilinear")
    return F.pad(inter, (0, kw - 1, 0, kh - 1), mode="replicate")


def resize_maps(
    x: torch.Tensor, size: tuple[int, int], *, mode: str = "bilinear", align_corners: bool | None = False
) -> torch.Tensor:
    """(B, C, h, w) maps resized to ``size`` (h, w) with ``F.interpolate`` (``mode`` "bilinear",
    "bicubic", "nearest"; ``align_corners`` ignored for "nearest")."""
    if mode == "nearest":
        return F.interpolate(x, size=list(size), mode="nearest")
    return F.interpolate(x, size=list(size), mode=mode, align_corners=align_corners)


def bilinear_taps(
    out_len: int, in_len: int, pos: torch.Tensor, *, align_corners: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices ``(i0, i1)`` and weights ``(w0, w1)`` of a bilinear resize from ``in_len`` to
    ``out_len`` samples at integer output positions ``pos``, with torch's arithmetic (float32), so
    ``w0 * v[i0] + w1 * v[i1]`` equals ``F.interpolate`` at ``pos`` without building the map."""
    p = pos.to(torch.float32)
    if align_corners:
        if out_len > 1:
            scale = torch.tensor(float(in_len - 1), dtype=torch.float32) / float(out_len - 1)
        else:
            scale = torch.tensor(0.0, dtype=torch.float32)
        real = scale * p
    else:
        scale = torch.tensor(float(in_len), dtype=torch.float32) / float(out_len)
        real = torch.clamp(scale * (p + 0.5) - 0.5, min=0.0)
    i0 = torch.clamp(torch.floor(real).long(), max=in_len - 1)
    w1 = torch.clamp(real - i0.to(torch.float32), 0.0, 1.0)
    w0 = 1.0 - w1
    i1 = i0 + (i0 < in_len - 1).long()
    return i0, i1, w0, w1
