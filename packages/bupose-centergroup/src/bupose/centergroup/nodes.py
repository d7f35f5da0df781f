"""CenterGroup node extraction: heatmaps -> keypoint and centre candidates with their features.

- :func:`stage_average`: the HigherHRNet multi-stage heatmap (1/4 map resized bilinearly to the 1/2
  map and averaged with it, mmpose ``get_multi_stage_outputs``), optionally projected to the
  input-image size.
- :func:`flip_average`: the flip test's per-branch average ``(own + mirror(other)[flip_index]) / 2``.
- :func:`sine_position`: DETR's un-normalised sine position encoding over the un-padded area.
- :func:`find_candidates`: NMS by max-pool (core's exact separable ``max_filter``), top-k per type, the keep rule (score >= min_score or
  among the first ``min_top_k``, and inside the un-padded image).
- :func:`bilinear_at`: values of ``F.interpolate(map, size, mode="bilinear", align_corners=False)``
  at integer output pixels, computed only there (no full-resolution feature map is built).
- :func:`extract_nodes`: all of it for a batch -> :class:`~bupose.centergroup.grouping.Nodes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bupose.core.algorithms.maps import flat_to_xy, max_filter

from .grouping import Nodes

__all__ = [
    "Candidates",
    "ParsingConfig",
    "bilinear_at",
    "extract_nodes",
    "find_candidates",
    "flip_average",
    "sine_position",
    "stage_average",
]


@dataclass(frozen=True)
class ParsingConfig:
    """One candidate type's parsing rule (official ``heatmap_cfg.*.parsing_cfg``)."""

    nms_kernel: int
    top_k: int = 30
    min_score: float = 0.005
    min_top_k: int = 3


KEYPOINTS = ParsingConfig(5)
CENTRES = ParsingConfig(17)


def stage_average(out0: torch.Tensor, out1: torch.Tensor, channels: Sequence[int], size_hw: tuple[int, int] | None) -> torch.Tensor:
    """Average of the 1/4 heatmaps ``out0[:, channels]`` resized to the 1/2 map and ``out1[:, channels]``,
    then resized to ``size_hw`` (bilinear, ``align_corners=False``) when given."""
    idx = list(channels)
    h1 = out1[:, idx]
    h0 = F.interpolate(out0[:, idx], size=h1.shape[-2:], mode="bilinear", align_corners=False)
    avg = (h0 + h1) / 2.0
    if size_hw is not None and tuple(avg.shape[-2:]) != tuple(size_hw):
        avg = F.interpolate(avg, size=tuple(size_hw), mode="bilinear", align_corners=False)
    return avg


def flip_average(own: torch.Tensor, other: torch.Tensor, flip_index: Sequence[int] | None) -> torch.Tensor:
    """``(own + mirror(other)[:, flip_index]) / 2`` for (B, C, H, W) maps (no reindexing when
    ``flip_index`` is None: the centre map)."""
    mirrored = torch.flip(other, dims=[3])
    if flip_index is not None:
        mirrored = mirrored[:, list(flip_index)]
    return (own + mirrored) / 2.0


def sine_position(valid: torch.Tensor, num_feats: int = 64, temperature: float = 10000.0) -> torch.Tensor:
    """DETR ``PositionEmbeddingSine(num_feats, temperature, normalize=False)`` of a (B, h, w) mask
    (True / 1 = valid): (B, 2·num_feats, h, w), channels [y, x], each interleaved sin/cos of the
    cumulative valid-pixel counts."""
    not_mask = valid.bool()
    y = not_mask.cumsum(1, dtype=torch.float32)
    x = not_mask.cumsum(2, dtype=torch.float32)
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=valid.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    px = x[..., None] / dim_t
    py = y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


def _source_index(dst: torch.Tensor, in_size: int, out_size: int, scale: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ratio = (1.0 / scale) if scale is not None else in_size / out_size
    src = ((dst.to(torch.float32) + 0.5) * ratio - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    lam = src - i0.to(torch.float32)
    return i0, i1, lam


def bilinear_at(
    maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor, out_hw: tuple[int, int], scale_factor: float | None = None
) -> torch.Tensor:
    """``F.interpolate(maps, out_hw or scale_factor, "bilinear", align_corners=False)`` read at integer
    output pixels ``(x, y)`` (B, N) -> (B, N, C), for (B, C, h, w) ``maps``."""
    b, c, h, w = maps.shape
    x0, x1, lx = _source_index(x, w, out_hw[1], scale_factor)
    y0, y1, ly = _source_index(y, h, out_hw[0], scale_factor)
    flat = maps.reshape(b, c, h * w)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        idx = (yy * w + xx)[:, None, :].expand(-1, c, -1)
        return torch.gather(flat, 2, idx)

    lx_, ly_ = lx[:, None, :].to(maps.dtype), ly[:, None, :].to(maps.dtype)
    top = (1 - lx_) * at(y0, x0) + lx_ * at(y0, x1)
    bottom = (1 - lx_) * at(y1, x0) + lx_ * at(y1, x1)
    return ((1 - ly_) * top + ly_ * bottom).transpose(1, 2)


@dataclass
class Candidates:
    """Candidates of one type group: ``index`` (B, T, K) flat pixel indices, ``score`` (B, T, K),
    ``x``/``y`` (B, T, K) integer pixels, ``keep`` (B, T, K) bool; ``heatmap`` the maps they came
    from, before the pad mask (what ``adjust`` reads)."""

    index: torch.Tensor
    score: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    keep: torch.Tensor
    heatmap: torch.Tensor


def find_candidates(heatmap: torch.Tensor, valid: torch.Tensor, config: ParsingConfig) -> Candidates:
    """Candidates of (B, T, H, W) ``heatmap`` inside the (B, H, W) ``valid`` mask (1 = image)."""
    b, t, h, w = heatmap.shape
    hm = heatmap * valid[:, None].to(heatmap.dtype)
    peaks = hm * (max_filter(hm, config.nms_kernel) == hm).to(hm.dtype)
    score, index = peaks.reshape(b, t, h * w).topk(min(config.top_k, h * w), dim=2)
    x, y = flat_to_xy(index, w)
    rank = torch.arange(index.shape[-1], device=index.device)
    keep = (score >= config.min_score) | (rank < config.min_top_k)
    inside = torch.gather(valid.reshape(b, 1, h * w).expand(-1, t, -1).to(heatmap.dtype), 2, index) > 0
    return Candidates(index, score, x, y, keep & inside, heatmap)


def extract_nodes(
    kp_heatmap: torch.Tensor,
    centre_heatmap: torch.Tensor,
    valid_full: torch.Tensor,
    valid_quarter: torch.Tensor,
    kp_embed: Sequence[torch.Tensor] | torch.Tensor,
    person_embed: Sequence[torch.Tensor] | torch.Tensor,
    *,
    weights: Sequence[float] | None = None,
    keypoints: ParsingConfig = KEYPOINTS,
    centres: ParsingConfig = CENTRES,
) -> tuple[Nodes, Candidates, Candidates]:
    """Graph nodes of a batch.

    ``kp_heatmap`` (B, J, H, W) and ``centre_heatmap`` (B, 1, H, W) at input resolution,
    ``valid_full`` (B, H, W) and ``valid_quarter`` (B, H/4, W/4) the un-padded masks (1 = image),
    ``kp_embed`` / ``person_embed`` the (B, D, h, w) embedding maps (a sequence over test scales,
    blended by ``weights``; default: the official 0.2/0.6/0.2 for three maps given in the
    scale order 0.5, 1, 2; the position features come
    from ``valid_quarter``). Returns the nodes and both candidate sets.
    """
    b, j, h, w = kp_heatmap.shape
    kps = find_candidates(kp_heatmap, valid_full, keypoints)
    cs = find_candidates(centre_heatmap, valid_full, centres)
    kp_maps = [kp_embed] if isinstance(kp_embed, torch.Tensor) else list(kp_embed)
    c_maps = [person_embed] if isinstance(person_embed, torch.Tensor) else list(person_embed)
    if weights is None:
        weights = [1.0] if len(kp_maps) == 1 else _scale_weights(len(kp_maps))
    pos_map = sine_position(valid_quarter).to(kp_heatmap.dtype)
    kx, ky = kps.x.reshape(b, -1), kps.y.reshape(b, -1)
    cx, cy = cs.x.reshape(b, -1), cs.y.reshape(b, -1)

    def blend(maps: list[torch.Tensor], xx: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        out = None
        for wgt, m in zip(weights, maps, strict=True):
            f = bilinear_at(m, xx, yy, (h, w), _factor(m, (h, w)))
            f = f if len(maps) == 1 else f * wgt
            out = f if out is None else out + f
        assert out is not None
        return out

    nodes = Nodes(
        kp_feat=blend(kp_maps, kx, ky),
        kp_pos=bilinear_at(pos_map, kx, ky, (h, w), _factor(pos_map, (h, w))),
        kp_xy=torch.stack([kx, ky], dim=-1).to(kp_heatmap.dtype),
        kp_keep=kps.keep.reshape(b, -1),
        kp_type=torch.arange(j, device=kp_heatmap.device).repeat_interleave(kps.index.shape[-1]),
        c_feat=blend(c_maps, cx, cy),
        c_pos=bilinear_at(pos_map, cx, cy, (h, w), _factor(pos_map, (h, w))),
        c_xy=torch.stack([cx, cy], dim=-1).to(kp_heatmap.dtype),
        c_keep=cs.keep.reshape(b, -1),
    )
    return nodes, kps, cs


def _factor(m: torch.Tensor, out_hw: tuple[int, int]) -> float | None:
    """The integer upsampling factor the official ``scale_factor=4`` call uses, when ``m`` is an
    exact 1/k of ``out_hw``; otherwise None (resize to the size)."""
    fh, fw = out_hw[0] / m.shape[-2], out_hw[1] / m.shape[-1]
    if fh == fw and float(fh).is_integer():
        return float(fh)
    return None


def _scale_weights(n: int) -> list[float]:
    if n == 3:
        return [0.2, 0.6, 0.2]
    return [1.0 / n] * n

