"""Property tests (issue 17): core's geometry, map decoding helpers, NMS/OKS, targets, image reading and
the results writer on random and degenerate inputs (empty maps, NaN, all-equal maps, single-pixel
images) never crash with anything but a clear ``ValueError``, and never write a NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bupose.core.algorithms.geometry import (
    MAX_ASPECT_RATIO,
    apply_affine,
    back_project,
    center_scale_affine,
    multi_scale_size,
    pad_to_multiple,
    round_to_multiple,
    short_side_resize_size,
)
from bupose.core.algorithms.maps import find_peaks, flat_to_xy, peak_mask, quarter_offset, sample_at
from bupose.core.algorithms.nms import pose_nms
from bupose.core.algorithms.oks import oks_matrix
from bupose.core.algorithms.targets import gaussian_heatmaps
from bupose.core.eval.results import load_results, write_results
from bupose.core.io import read_header, read_image
from bupose.core.poses import Poses

SETTINGS = settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SIDES = st.one_of(st.integers(1, 4000), st.sampled_from([1, 2, 3]))
ODD_VALUES = st.sampled_from([0.0, 1.0, -1.0, 1e-30, 1e30, float("nan"), float("inf"), -float("inf")])


def maps_strategy(max_side: int = 6) -> st.SearchStrategy[np.ndarray]:
    """(C, H, W) float32 maps: random, all-equal or with NaN/inf entries; H or W may be 1."""
    shape = st.tuples(st.integers(1, 3), st.integers(1, max_side), st.integers(1, max_side))
    random = shape.flatmap(
        lambda s: hnp.arrays(np.float32, s, elements=st.floats(-1e3, 1e3, width=32, allow_nan=False))
    )
    equal = st.tuples(shape, ODD_VALUES).map(lambda a: np.full(a[0], a[1], np.float32))
    poisoned = st.tuples(random, st.integers(0, 10**6), ODD_VALUES).map(_poison)
    return st.one_of(random, equal, poisoned)


def _poison(args: tuple[np.ndarray, int, float]) -> np.ndarray:
    arr, index, value = args
    out = arr.copy()
    out.reshape(-1)[index % out.size] = value
    return out


# ------------------------------------------------------------------------------------------ geometry
@SETTINGS
@given(h=SIDES, w=SIDES, size=st.integers(32, 1024), factor=st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0]),
       rounding=st.sampled_from(["add_floor", "ceil"]))
def test_multi_scale_size_is_positive_and_round_trips_the_centre(h: int, w: int, size: int, factor: float,
                                                                  rounding: str) -> None:
    if max(h, w) > MAX_ASPECT_RATIO * min(h, w):
        with pytest.raises(ValueError, match=r"aspect ratio \d+:1 is beyond"):
            multi_scale_size((h, w), size, factor, rounding=rounding)  # type: ignore[arg-type]
        return
    meta = multi_scale_size((h, w), size, factor, rounding=rounding)  # type: ignore[arg-type]
    assert max(meta.size_wh) <= (MAX_ASPECT_RATIO + 1) * factor * (size + 128)
    assert meta.size_wh[0] >= 1 and meta.size_wh[1] >= 1
    assert all(math.isfinite(v) and v > 0 for v in meta.scale)
    mid = np.array([[meta.size_wh[0] / 2.0, meta.size_wh[1] / 2.0]])
    back = back_project(mid, meta)
    assert np.all(np.isfinite(back))
    assert np.allclose(back[0], meta.center, atol=1e-6 * max(h, w) + 1e-6)


@SETTINGS
@given(h=SIDES, w=SIDES, size=st.integers(1, 1333), max_size=st.one_of(st.none(), st.integers(1, 2000)))
def test_short_side_resize_size_never_gives_an_empty_image(h: int, w: int, size: int, max_size: int | None) -> None:
    oh, ow = short_side_resize_size((h, w), size, max_size)
    assert oh >= 1 and ow >= 1


def test_geometry_refuses_empty_sizes_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        multi_scale_size((0, 5), 512)
    with pytest.raises(ValueError, match="must be positive"):
        short_side_resize_size((3, 0), 512)
    with pytest.raises(ValueError, match="multiple must be positive"):
        round_to_multiple(5, 0)


@SETTINGS
@given(img=hnp.arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))),
       multiple=st.integers(1, 64))
def test_pad_to_multiple_keeps_pixels(img: np.ndarray, multiple: int) -> None:
    out, (ph, pw) = pad_to_multiple(img, multiple)
    assert out.shape[0] % multiple == 0 and out.shape[1] % multiple == 0
    assert out.shape[:2] == (img.shape[0] + ph, img.shape[1] + pw)
    assert np.array_equal(out[: img.shape[0], : img.shape[1]], img)


@SETTINGS
@given(cx=st.floats(-1e4, 1e4), cy=st.floats(-1e4, 1e4), sw=st.floats(1e-3, 1e3), sh=st.floats(1e-3, 1e3),
       ow=st.integers(1, 1024), oh=st.integers(1, 1024),
       pts=hnp.arrays(np.float64, st.tuples(st.integers(0, 5), st.just(2)), elements=st.floats(-1e4, 1e4)))
def test_affine_round_trip_is_finite(cx: float, cy: float, sw: float, sh: float, ow: int, oh: int,
                                     pts: np.ndarray) -> None:
    fwd = center_scale_affine((cx, cy), (sw, sh), (ow, oh))
    inv = center_scale_affine((cx, cy), (sw, sh), (ow, oh), inverse=True)
    there = apply_affine(pts, fwd)
    back = apply_affine(there, inv)
    assert np.all(np.isfinite(there)) and np.all(np.isfinite(back))
    assert back.shape == pts.shape
    assert np.allclose(back, pts, rtol=1e-6, atol=1e-6 * (1 + np.abs(pts).max(initial=0)) + 1e-4)


# ------------------------------------------------------------------------------------------ map helpers
@SETTINGS
@given(maps=maps_strategy(), kernel=st.sampled_from([1, 3, 5]), topk=st.one_of(st.none(), st.integers(1, 40)))
def test_find_peaks_on_degenerate_maps(maps: np.ndarray, kernel: int, topk: int | None) -> None:
    t = torch.from_numpy(maps)
    mask = peak_mask(t, kernel)
    assert mask.shape == t.shape and mask.dtype == torch.bool
    index, scores = find_peaks(t, kernel=kernel, topk=topk)
    c, h, w = maps.shape
    k = h * w if topk is None else min(topk, h * w)
    assert index.shape == (c, k) and scores.shape == (c, k)
    assert int(index.min()) >= 0 and int(index.max()) < h * w
    x, y = flat_to_xy(index, w)
    assert int(x.max()) < w and int(y.max()) < h
    # the 2-D form with a threshold drops NaN scores (NaN > t is false)
    idx2, sc2 = find_peaks(t[0], kernel=kernel, topk=topk, threshold=0.0)
    assert idx2.shape == sc2.shape and not torch.isnan(sc2).any()


@SETTINGS
@given(maps=maps_strategy(), data=st.data())
def test_quarter_offset_and_sampling_stay_inside(maps: np.ndarray, data: st.DataObject) -> None:
    c, h, w = maps.shape
    t = torch.from_numpy(maps)
    x = torch.tensor(data.draw(st.lists(st.integers(0, w - 1), min_size=c, max_size=c)), dtype=torch.float32)
    y = torch.tensor(data.draw(st.lists(st.integers(0, h - 1), min_size=c, max_size=c)), dtype=torch.float32)
    qx, qy = quarter_offset(t, x, y)
    assert torch.all((qx - x).abs() <= 0.25 + 1e-6) and torch.all((qy - y).abs() <= 0.25 + 1e-6)
    pts = torch.stack([x, y], dim=1)
    vals = sample_at(t, pts)
    assert vals.shape == (c, c)
    finite_maps = np.isfinite(maps).all()
    if finite_maps:
        assert torch.isfinite(vals).all()


# ------------------------------------------------------------------------------------------ NMS / OKS
@SETTINGS
@given(coords=hnp.arrays(np.float32, st.tuples(st.integers(0, 6), st.integers(1, 5), st.just(2)),
                         elements=st.one_of(st.floats(-100, 100, width=32), st.just(5.0))),
       data=st.data())
def test_pose_nms_on_equal_empty_and_random_poses(coords: np.ndarray, data: st.DataObject) -> None:
    n = coords.shape[0]
    ranking = torch.tensor(data.draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n)), dtype=torch.float32)
    keep = pose_nms(torch.from_numpy(coords), ranking, ratio=0.2, min_joints=0)
    assert len(set(keep)) == len(keep) and all(0 <= i < n for i in keep)


@SETTINGS
@given(n_det=st.integers(0, 4), n_gt=st.integers(0, 4), k=st.integers(1, 5), seed=st.integers(0, 1000),
       area=st.sampled_from([0.0, 1e-9, 1.0, 1e4]))
def test_oks_is_in_unit_interval(n_det: int, n_gt: int, k: int, seed: int, area: float) -> None:
    rng = np.random.default_rng(seed)
    det = rng.uniform(0, 50, (n_det, k, 3))
    gt = rng.uniform(0, 50, (n_gt, k, 3))
    gt[..., 2] = rng.integers(0, 3, (n_gt, k))
    sigmas = np.full(k, 0.05)
    out = oks_matrix(det, gt, np.full(n_gt, area), np.tile([0.0, 0.0, 50.0, 50.0], (n_gt, 1)), sigmas)
    assert out.shape == (n_det, n_gt)
    if out.size and area > 0:
        assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1 + 1e-12))


# ------------------------------------------------------------------------------------------ targets
@SETTINGS
@given(joints=hnp.arrays(np.float64, st.tuples(st.integers(0, 3), st.integers(1, 4), st.just(3)),
                         elements=st.one_of(st.floats(-20, 80), ODD_VALUES)),
       size=st.tuples(st.integers(1, 16), st.integers(1, 16)), sigma=st.floats(0.1, 5.0))
def test_gaussian_heatmaps_ignore_bad_joints(joints: np.ndarray, size: tuple[int, int], sigma: float) -> None:
    hms, weight = gaussian_heatmaps(joints, size, sigma)
    assert hms.shape == (joints.shape[1], *size) and weight.shape == hms.shape
    assert np.all(np.isfinite(hms)) and np.all((hms >= 0) & (hms <= 1 + 1e-6))
    assert np.all(np.isfinite(weight))


# ------------------------------------------------------------------------------------------ results writer
@SETTINGS
@given(kps=hnp.arrays(np.float64, st.tuples(st.integers(0, 4), st.integers(1, 17), st.just(3)),
                      elements=st.one_of(st.floats(-1e6, 1e6), ODD_VALUES)),
       data=st.data())
def test_results_are_never_nan(kps: np.ndarray, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    n = kps.shape[0]
    scores = np.array(data.draw(st.lists(st.one_of(st.floats(0, 1), ODD_VALUES), min_size=n, max_size=n)))
    poses = Poses(kps, scores, "coco17")
    entries = poses.to_coco(7)
    text = json.dumps(entries, allow_nan=False)  # raises on NaN/inf
    good = [i for i in range(n) if np.isfinite(scores[i]) and np.isfinite(kps[i, :, :2]).all()]
    assert len(entries) == len(good)
    for e, i in zip(entries, good):
        assert e["keypoints"][0::3] == [float(v) for v in kps[i, :, 0]]
        assert len(e["bbox"]) == 4 and all(math.isfinite(v) for v in e["bbox"])
    path = tmp_path_factory.mktemp("res") / "results.json"
    write_results(path, entries)
    assert json.loads(path.read_text()) == json.loads(text)
    if entries and kps.shape[1] * 3 == len(entries[0]["keypoints"]):
        assert load_results(path) == entries


# ------------------------------------------------------------------------------------------ image reading
@SETTINGS
@given(blob=st.one_of(
    st.binary(min_size=0, max_size=300),
    st.binary(max_size=200).map(lambda b: b"\xff\xd8\xff" + b),
    st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=200).map(lambda b: b"GIF89a" + b),
    st.binary(max_size=200).map(lambda b: b"II*\x00" + b),
    st.binary(max_size=200).map(lambda b: b"RIFF\x00\x00\x00\x00WEBP" + b),
    st.binary(max_size=200).map(lambda b: b"BM" + b),
    st.binary(max_size=200).map(lambda b: b"P6 " + b),
))
def test_read_image_on_random_bytes(blob: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("img") / "x.jpg"
    path.write_bytes(blob)
    header_error = img_error = ""
    try:
        read_header(blob)
    except ValueError as exc:
        header_error = str(exc)
    assert not header_error or header_error.startswith("truncated")
    img = None
    try:
        img = read_image(path)
    except ValueError as exc:
        img_error = str(exc)
    if img is None:
        assert img_error.startswith(str(path)) and "\n" not in img_error
    else:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.size > 0


@SETTINGS
@given(img=hnp.arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(1, 4), st.sampled_from([1, 3, 4]))),
       ext=st.sampled_from([".png", ".bmp", ".tif", ".ppm"]))
def test_tiny_images_round_trip(img: np.ndarray, ext: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    if ext == ".ppm":  # PPM holds 3 channels only
        img = np.ascontiguousarray(np.broadcast_to(img[:, :, :1], (*img.shape[:2], 3)) if img.shape[2] == 1 else img[:, :, :3])
    ok, buf = cv2.imencode(ext, img)
    assert ok
    path: Path = tmp_path_factory.mktemp("tiny") / f"t{ext}"
    path.write_bytes(buf.tobytes())
    got = read_image(path)
    assert got.shape == (img.shape[0], img.shape[1], 3)
    bgr = img if img.shape[2] == 3 else (np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[:, :, :3])
    assert np.array_equal(got, bgr[:, :, ::-1])
