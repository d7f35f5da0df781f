"""bupose.core.algorithms.maps and .nms against plain loop references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bupose.core.algorithms.maps import (
    find_peaks,
    flat_to_xy,
    max_filter,
    peak_mask,
    pool_kernel,
    quarter_offset,
    sample_at,
)
from bupose.core.algorithms.nms import pose_nms


def _loop_peaks(m: np.ndarray, k: int, padding: str, clamp_min: float | None) -> np.ndarray:
    r = k // 2
    src = m if clamp_min is None else np.maximum(m, clamp_min)
    if padding == "max_pool":
        padded = np.pad(src, r, constant_values=-np.inf)
    elif padding == "zero":
        padded = np.pad(src, r, constant_values=0.0)
    else:
        padded = np.pad(src, r, mode={"reflect": "reflect", "replicate": "edge"}[padding])
    h, w = m.shape
    out = np.zeros_like(m, dtype=bool)
    for y in range(h):
        for x in range(w):
            out[y, x] = padded[y : y + k, x : x + k].max() == m[y, x]
    return out


@pytest.mark.parametrize("padding", ["max_pool", "zero", "reflect", "replicate"])
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("clamp_min", [None, 0.0])
def test_peak_mask_equals_loop(padding: str, kernel: int, clamp_min: float | None) -> None:
    rng = np.random.default_rng(kernel)
    m = np.round(rng.normal(0, 1, (9, 11)), 1).astype(np.float32)  # ties on purpose
    got = peak_mask(torch.from_numpy(m), kernel, padding=padding, clamp_min=clamp_min).numpy()  # type: ignore[arg-type]
    assert np.array_equal(got, _loop_peaks(m, kernel, padding, clamp_min))


@pytest.mark.parametrize("padding", ["max_pool", "zero", "reflect", "replicate"])
@pytest.mark.parametrize("kernel", [1, 3, 5, 7, 17])
@pytest.mark.parametrize("shape", [(23, 31), (3, 20, 18), (2, 2, 19, 40)])
def test_max_filter_equals_max_pool(padding: str, kernel: int, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(kernel * len(shape))
    m = torch.round(torch.randn(shape, generator=g), decimals=1)  # ties on purpose
    flat = m.view(-1)
    flat[3], flat[-5], flat[len(flat) // 2] = float("nan"), float("inf"), float("-inf")
    r = kernel // 2
    x = m.reshape(-1, 1, *shape[-2:])
    if padding == "max_pool":
        want = F.max_pool2d(x, kernel, 1, r)
    else:
        mode = "constant" if padding == "zero" else padding
        want = F.max_pool2d(F.pad(x, (r, r, r, r), mode=mode), kernel, 1, 0)
    got = max_filter(m, kernel, padding=padding)  # type: ignore[arg-type]
    assert got.shape == m.shape
    torch.testing.assert_close(got, want.reshape(shape), rtol=0, atol=0, equal_nan=True)


def test_find_peaks_topk_threshold_and_channels() -> None:
    m = torch.full((20, 20), -1.0)
    m[5, 5], m[5, 6], m[15, 15], m[10, 2] = 0.5, 0.4, 0.005, 0.2
    idx, score = find_peaks(m, kernel=3, topk=30, threshold=0.01)
    assert idx.tolist() == [105, 202]
    torch.testing.assert_close(score, torch.tensor([0.5, 0.2]))
    assert find_peaks(m, kernel=3, topk=1, threshold=0.01)[0].tolist() == [105]  # top-k before threshold
    assert find_peaks(m, kernel=3, topk=30, threshold=0.2, inclusive=True)[0].tolist() == [105, 202]
    x, y = flat_to_xy(idx, 20)
    assert x.tolist() == [5, 2] and y.tolist() == [5, 10]
    maps = torch.stack([m, m.flip(-1)])
    ci, _cs = find_peaks(maps, kernel=3, topk=2)
    assert ci.shape == (2, 2) and ci[1, 0].item() == 5 * 20 + 14
    gi, _ = find_peaks(maps, kernel=3, topk=2, threshold=0.1, per_channel=False)
    assert sorted(gi.tolist()) == [105, 400 + 5 * 20 + 14]
    with pytest.raises(ValueError, match="threshold needs"):
        find_peaks(maps, threshold=0.1)
    with pytest.raises(ValueError, match="odd"):
        peak_mask(m, 4)


def test_pool_kernel_rule() -> None:
    assert [pool_kernel(s, s) for s in (100, 200, 201, 300, 301)] == [3, 3, 5, 5, 7]
    assert pool_kernel(10, 10, ((5, 17),), 5) == 17 and pool_kernel(4, 4, ((5, 17),), 5) == 5


def test_sample_at_align_corners() -> None:
    torch.manual_seed(0)
    maps = torch.randn(3, 6, 8)
    pts = torch.tensor([[0.0, 0.0], [7.0, 5.0], [2.0, 3.0]])
    torch.testing.assert_close(sample_at(maps, pts), maps[:, [0, 5, 3], [0, 7, 2]], rtol=0, atol=1e-6)
    mid = sample_at(maps, torch.tensor([[2.5, 3.0]]))[:, 0]
    torch.testing.assert_close(mid, (maps[:, 3, 2] + maps[:, 3, 3]) / 2, rtol=0, atol=1e-6)
    # align_corners=False: pixel centres at i too, but the map edge at -0.5 (same inner values)
    torch.testing.assert_close(
        sample_at(maps, pts, align_corners=False), sample_at(maps, pts), rtol=0, atol=1e-5
    )
    per = sample_at(maps, pts[None].expand(3, -1, -1).flip(1))
    torch.testing.assert_close(per, sample_at(maps, pts).flip(1))
    with pytest.raises(ValueError, match="points must be"):
        sample_at(maps, torch.zeros(2, 3, 2))


@pytest.mark.parametrize("tie", ["stay", "minus"])
def test_quarter_offset_equals_loop(tie: str) -> None:
    rng = np.random.default_rng(4)
    hm = torch.from_numpy(np.round(rng.uniform(0, 1, (4, 7, 9)), 1).astype(np.float32))
    x = torch.from_numpy(rng.uniform(0, 9, (4, 6)).astype(np.float32))
    y = torch.from_numpy(rng.uniform(0, 7, (4, 6)).astype(np.float32))
    nx, ny = quarter_offset(hm, x, y, tie=tie, shift=0.5 if tie == "minus" else 0.0)  # type: ignore[arg-type]
    for c in range(4):
        for n in range(6):
            xi, yi = int(x[c, n]), int(y[c, n])
            t = hm[c]
            r, le = t[yi, min(xi + 1, 8)], t[yi, max(xi - 1, 0)]
            d, u = t[min(yi + 1, 6), xi], t[max(yi - 1, 0), xi]
            if tie == "stay":
                ex = float(x[c, n]) + 0.25 * float(np.sign(float(r - le)))
                ey = float(y[c, n]) + 0.25 * float(np.sign(float(d - u)))
            else:
                ex = float(x[c, n]) + (0.25 if r > le else -0.25) + 0.5
                ey = float(y[c, n]) + (0.25 if d > u else -0.25) + 0.5
            assert float(nx[c, n]) == pytest.approx(ex) and float(ny[c, n]) == pytest.approx(ey)
    bx, by = quarter_offset(hm[None], x[None], y[None], tie=tie, shift=0.5 if tie == "minus" else 0.0)  # type: ignore[arg-type]
    assert torch.equal(bx[0], nx) and torch.equal(by[0], ny)


def _greedy_reference(coord: torch.Tensor, rank: torch.Tensor, ratio: float, num: int) -> list[int]:
    n = coord.shape[0]
    keep: list[int] = []
    suppressed: set[int] = set()
    for i in range(n):
        if i in suppressed:
            continue
        x, y = coord[i, :, 0], coord[i, :, 1]
        thre = ratio * float(torch.sqrt((x.max() - x.min()) ** 2 + (y.max() - y.min()) ** 2))
        group = [b for b in range(n) if int(((coord[i] - coord[b]).pow(2).sum(1).sqrt() < thre).sum()) > num]
        if not group:
            continue
        best = max(group, key=lambda b: (float(rank[b]), -b))
        if best in suppressed:
            continue
        keep.append(best)
        suppressed.update(group)
    return keep


def test_pose_nms_equals_plain_greedy() -> None:
    rng = np.random.default_rng(5)
    for _ in range(25):
        n = int(rng.integers(1, 20))
        base = rng.uniform(0, 60, (n, 1, 2))
        coord = torch.tensor(base + rng.normal(0, 6, (n, 17, 2)), dtype=torch.float32)
        rank = torch.tensor(rng.uniform(0, 1, n), dtype=torch.float32)
        assert pose_nms(coord, rank, ratio=0.3, min_joints=4) == _greedy_reference(coord, rank, 0.3, 4)
    assert pose_nms(torch.zeros(0, 17, 2), torch.zeros(0), ratio=0.05, min_joints=8) == []


def test_pose_nms_degenerate_pose() -> None:
    coord = torch.zeros(2, 17, 2)
    coord[1] = torch.randn(17, 2) * 10
    assert pose_nms(coord, torch.tensor([0.9, 0.1]), ratio=0.05, min_joints=8) == [1]
    with pytest.raises(ValueError, match="pose 0 overlaps no pose"):
        pose_nms(coord, torch.tensor([0.9, 0.1]), ratio=0.05, min_joints=8, skip_empty=False)
