"""DEKR decode against the official fixtures (shared/golden/dekr/decode_*.pt, copied byte for byte
into tests/data/golden/dekr) and behaviour tests of the individual rules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bupose.core.plugins import get_registry
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec
from bupose.core.testing import DecoderContract
from bupose.dekr.decode import (
    DecodeTrace,
    DEKRDecoder,
    ScaleOutput,
    center_nms,
    rescore_features,
    up_interpolate,
)
from bupose.dekr.model import PredictOKSNet
from bupose.dekr.preprocess import WarpMeta, multi_scale_size

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from _dekr_golden import build_state_dict, load
from naive_decode import naive_decode

FILES = {
    "decode_coco_single_scale.pt": ("a_noflip", "b_flip", "d_flip_matchhmp", "e_flip_rescore"),
    "decode_coco_multi_scale.pt": ("c_ms_flip",),
    "decode_crowdpose_single_scale.pt": ("f_flip", "g_flip_rescore"),
}
CASES = [(f, c) for f, cases in FILES.items() for c in cases]
_CACHE: dict[str, dict[str, Any]] = {}


def fixture(name: str) -> dict[str, Any]:
    if name not in _CACHE:
        _CACHE[name] = load(name)
    return _CACHE[name]


def _layout(d: dict[str, Any]) -> str:
    return "coco17" if d["scene/dataset"] == "coco" else "crowdpose14"


def case_inputs(fname: str, case: str) -> tuple[DEKRDecoder, list[ScaleOutput], PredictOKSNet | None]:
    d = fixture(fname)
    p = f"case/{case}/cfg/"
    flip = bool(d[p + "TEST.FLIP_TEST"])
    dec = DEKRDecoder(
        _layout(d),
        nms_thre=d[p + "TEST.NMS_THRE"],
        nms_num_thre=d[p + "TEST.NMS_NUM_THRE"],
        keypoint_threshold=d[p + "TEST.KEYPOINT_THRESHOLD"],
        max_num_people=d[p + "DATASET.MAX_NUM_PEOPLE"],
        pool_threshold1=d[p + "TEST.POOL_THRESHOLD1"],
        pool_threshold2=d[p + "TEST.POOL_THRESHOLD2"],
        decrease=d[p + "TEST.DECREASE"],
        match_hmp=bool(d[p + "TEST.MATCH_HMP"]),
        adjust_threshold=d[p + "TEST.ADJUST_THRESHOLD"],
        max_absorb_distance=d[p + "TEST.MAX_ABSORB_DISTANCE"],
        gaussian_kernel=d[p + "TEST.GUASSIAN_KERNEL"],
        sigma=d[p + "DATASET.SIGMA"],
        stride=d[p + "DATASET.INPUT_SIZE"] / d[p + "DATASET.OUTPUT_SIZE"],
    )
    outs = []
    for s in d[p + "TEST.SCALE_FACTOR"]:
        r = f"raw/s{s:.2f}/"
        h, w = d[r + "input_hw"]
        meta = WarpMeta(tuple(d["meta/image_hw"]), (w, h), tuple(d[r + "center"].tolist()), tuple(d[r + "scale"].tolist()))
        outs.append(
            ScaleOutput(
                float(s),
                d[r + "heatmap"][0],
                d[r + "offset"][0].float(),
                d[r + "heatmap_flip"][0] if flip else None,
                d[r + "offset_flip"][0].float() if flip else None,
                meta,
            )
        )
    net = None
    if d[p + "RESCORE.VALID"]:
        manifest = "manifest_rescore_coco.tsv" if _layout(d) == "coco17" else "manifest_rescore_crowdpose.tsv"
        net = PredictOKSNet.from_state_dict(build_state_dict(manifest)).eval()
    return dec, outs, net


def _np(x: Any) -> np.ndarray:
    return np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


@pytest.mark.parametrize(("fname", "case"), CASES)
def test_decode_matches_official(fname: str, case: str) -> None:
    d = fixture(fname)
    dec, outs, net = case_inputs(fname, case)
    trace = DecodeTrace()
    poses = dec.decode(outs, rescore_net=net, trace=trace)
    p = f"case/{case}/"
    for o in outs:
        k = f"{p}s{o.scale:.2f}/"
        torch.testing.assert_close(trace.merged_center[o.scale], d[k + "merged_center_heatmap"], rtol=0, atol=1e-6)
        assert torch.equal(trace.center_index[o.scale], d[k + "center_index"]), "centre indices must be exact"
        np.testing.assert_allclose(_np(trace.center_score[o.scale]), _np(d[k + "center_score"]), rtol=0, atol=1e-6)
        np.testing.assert_allclose(_np(trace.proposals[o.scale]), _np(d[k + "proposals"]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(_np(trace.pose_coord), _np(d[p + "nms/pose_coord"]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        _np(trace.pose_score_rescaled), _np(d[p + "nms/pose_score_rescaled"]), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(_np(trace.heatval), _np(d[p + "nms/heatval"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_np(trace.heat_score), _np(d[p + "nms/heat_score"]), rtol=0, atol=1e-6)
    assert trace.keep == list(d[p + "nms/keep"])
    after = _np(trace.after_nms_poses)
    ref_after = _np(d[p + "after_nms/poses"])
    np.testing.assert_allclose(after[..., :2], ref_after[..., :2], rtol=0, atol=1e-5)
    np.testing.assert_allclose(after[..., 2], ref_after[..., 2], rtol=0, atol=1e-6)
    np.testing.assert_allclose(_np(trace.after_nms_scores), _np(d[p + "after_nms/scores"]), rtol=0, atol=1e-6)
    if dec.match_hmp:
        np.testing.assert_allclose(_np(trace.after_absorb), _np(d[p + "match/after_absorb"]), rtol=0, atol=1e-5)
        np.testing.assert_allclose(_np(trace.after_adjust), _np(d[p + "match/after_adjust"]), rtol=0, atol=1e-3)
    else:
        assert trace.after_absorb is None and trace.after_adjust is None
    # back-projection arguments: centre/scale of the last (smallest) scale, scale-1 input size
    last = min(outs, key=lambda o: o.scale).meta
    assert last is not None
    np.testing.assert_array_equal(last.center, d[p + "final/center"].numpy())
    np.testing.assert_array_equal(last.scale, d[p + "final/scale"].numpy())
    s1 = next(o for o in outs if o.scale == 1.0).meta
    assert s1 is not None and list(s1.size_wh) == list(d[p + "final/base_size_wh"])
    assert isinstance(poses, Poses) and poses.layout == dec.layout.name
    np.testing.assert_allclose(poses.keypoints, _np(d[p + "final/poses"]), rtol=0, atol=1e-3)
    if net is not None:
        np.testing.assert_allclose(_np(trace.rescore_features), _np(d[p + "rescore/features"]), rtol=0, atol=1e-5)
        np.testing.assert_allclose(_np(trace.rescore_scores_in), _np(d[p + "rescore/scores_in"]), rtol=0, atol=1e-6)
        np.testing.assert_allclose(poses.scores, _np(d[p + "final/scores"]), rtol=0, atol=1e-5)
    else:
        np.testing.assert_allclose(poses.scores, _np(d[p + "final/scores"]), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("fname", "case"), [c for c in CASES if c[1] != "d_flip_matchhmp"])
def test_lazy_decode_equals_full_map_loop_decode(fname: str, case: str) -> None:
    """The vectorised decode (maps evaluated only where needed) equals a full-map, Python-loop one."""
    dec, outs, _ = case_inputs(fname, case)
    poses, scores = dec.decode_input_pixels(sorted(outs, key=lambda o: -o.scale))
    ref, ref_scores = naive_decode(dec, outs)
    assert poses.shape == ref.shape
    np.testing.assert_allclose(poses, ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-6)


def test_heat_lookup_equals_full_up_interpolate() -> None:
    """Bilinear samples at lookup pixels equal the fully up-sampled map (several map sizes)."""
    torch.manual_seed(0)
    layout = get_registry().get("layouts", "coco17")
    assert isinstance(layout, LayoutSpec)
    dec = DEKRDecoder(layout)
    for h, w, scale in ((16, 24, 1.0), (13, 21, 1.0), (32, 48, 2.0), (8, 12, 0.5)):
        o = ScaleOutput(scale, torch.randn(18, h, w), torch.randn(34, h, w), torch.randn(18, h, w), torch.randn(34, h, w))
        from bupose.dekr.decode import _MergedMaps

        mm = _MergedMaps(o, dec.flip_index_with_center, True)
        size = (int(4 / scale * h), int(4 / scale * w))
        full = up_interpolate(mm.full_heatmap()[None], size)[0, :-1]
        coord = torch.rand(40, 17, 2) * torch.tensor([size[1] + 6.0, size[0] + 6.0]) - 3.0
        got = dec._heat_values([mm], coord, size)
        yb = torch.clamp(torch.floor(coord[..., 1]), 0, size[0] - 1).long()
        xl = torch.clamp(torch.floor(coord[..., 0]), 0, size[1] - 1).long()
        exp = full[torch.arange(17).expand(40, 17), yb, xl]
        torch.testing.assert_close(got, exp, rtol=0, atol=2e-6)


def test_up_interpolate_replicates_borders() -> None:
    x = torch.arange(6, dtype=torch.float32).view(1, 1, 2, 3)
    y = up_interpolate(x, (8, 12))
    assert y.shape == (1, 1, 8, 12)
    # interpolated part is (8-4+1, 12-4+1) = (5, 9), then the last row/col is replicated 3 times
    assert torch.equal(y[0, 0, 4:, :], y[0, 0, 4:5, :].expand(4, 12))
    assert torch.equal(y[0, 0, :, 8:], y[0, 0, :, 8:9].expand(8, 4))
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 4, 8] == 5


def test_center_nms_rules() -> None:
    m = torch.full((20, 20), -1.0)
    m[5, 5] = 0.5
    m[5, 6] = 0.4  # not a local maximum -> zeroed
    m[15, 15] = 0.005  # below threshold
    m[10, 2] = 0.2
    idx, score = center_nms(m, max_num_people=30)
    assert idx.tolist() == [5 * 20 + 5, 10 * 20 + 2]
    torch.testing.assert_close(score, torch.tensor([0.5, 0.2]))
    # top-k runs before the threshold: with k=1 only the best survives
    idx1, _ = center_nms(m, max_num_people=1)
    assert idx1.tolist() == [105]
    # negative maxima never survive, zeroed non-maxima fill the top-k
    neg = torch.full((10, 10), -3.0)
    neg[2, 2] = -0.5
    assert center_nms(neg)[0].numel() == 0


@pytest.mark.parametrize(("size", "kernel"), [((100, 100), 3), ((201, 201), 5), ((301, 301), 7), ((200, 200), 3)])
def test_center_nms_kernel_depends_on_map_size(size: tuple[int, int], kernel: int) -> None:
    h, w = size
    m = torch.zeros(h, w)
    m[50, 50] = 1.0
    m[50, 50 + kernel // 2] = 0.9  # inside the window -> suppressed
    m[50, 50 - kernel // 2 - 1] = 0.8  # just outside (other side) -> kept
    idx, _ = center_nms(m)
    assert idx.tolist() == [50 * w + 50, 50 * w + 50 - kernel // 2 - 1]


def _coco() -> LayoutSpec:
    spec = get_registry().get("layouts", "coco17")
    assert isinstance(spec, LayoutSpec)
    return spec


def test_pose_nms_is_asymmetric_and_greedy() -> None:
    dec = DEKRDecoder(_coco(), nms_num_thre=8, nms_thre=0.05)
    big = torch.zeros(17, 2)
    big[:, 0] = torch.linspace(0, 100, 17)
    big[:, 1] = torch.linspace(0, 100, 17)
    small = big.clone() * 0.05 + 2.0  # a small pose near the top-left of the big one
    shifted = big + 3.0  # 3 px from every joint of big: 3 < 0.05 * sqrt(2 * 100^2) = 7.07
    coord = torch.stack([big, shifted, small])
    keep = dec.pose_nms_keep(coord, torch.tensor([0.5, 0.9, 0.1]))
    # big's overlap set is {big, shifted}: shifted has the higher heat score and is kept instead
    assert keep == [1, 2]
    # asymmetric: the small pose's threshold (its own tiny area) does not reach the big pose
    keep2 = dec.pose_nms_keep(torch.stack([small, big]), torch.tensor([0.1, 0.9]))
    assert keep2 == [0, 1]


def test_pose_nms_matches_loop_reference_on_random_poses() -> None:
    rng = np.random.default_rng(3)
    dec = DEKRDecoder(_coco(), nms_thre=0.3, nms_num_thre=4)
    for _trial in range(20):
        n = int(rng.integers(1, 25))
        base = rng.uniform(0, 50, (n, 1, 2))
        coord = torch.tensor(base + rng.normal(0, 6, (n, 17, 2)), dtype=torch.float32)
        hs = torch.tensor(rng.uniform(0, 1, n), dtype=torch.float32)
        assert dec.pose_nms_keep(coord, hs) == _loop_nms(coord, hs, 0.3, 4)


def _loop_nms(coord: torch.Tensor, hs: torch.Tensor, thre_f: float, num: int) -> list[int]:
    n = coord.shape[0]
    keep: list[int] = []
    ignored: list[int] = []
    for i in range(n):
        if i in ignored:
            continue
        x, y = coord[i, :, 0], coord[i, :, 1]
        thre = thre_f * torch.sqrt((x.max() - x.min()) ** 2 + (y.max() - y.min()) ** 2)
        group = [b for b in range(n) if int(((coord[i] - coord[b]).pow(2).sum(1).sqrt() < thre).sum()) > num]
        best = group[int(torch.argmax(hs[group]))]
        if best in ignored:
            continue
        keep.append(best)
        ignored += [g for g in group if g not in ignored]
    return keep


def test_rescore_features_layout() -> None:
    poses = np.zeros((1, 17, 3), np.float32)
    poses[0, :, 0] = np.arange(17) * 2.0
    poses[0, :, 2] = np.linspace(0, 1, 17)
    f = rescore_features(poses, "coco17")
    assert f.shape == (1, 74)
    # limb 0 = joint0 - joint1 = (-2, 0); normaliser = mean(len limb 9 (5-11), len limb 11 (6-12)) = 12
    np.testing.assert_allclose(f[0, :2], [-2 / 12, 0.0], rtol=1e-6)
    np.testing.assert_allclose(f[0, 38], 2 / 12, rtol=1e-6)
    np.testing.assert_allclose(f[0, 57:], poses[0, :, 2])
    tiny = np.zeros((1, 14, 3), np.float32)
    tiny[0, :, 0] = np.arange(14) * 0.1
    fc = rescore_features(tiny, "crowdpose14")
    assert fc.shape == (1, 59)
    np.testing.assert_allclose(fc[0, 0], (1.2 - 1.3) / 1.0, rtol=1e-5)  # normaliser floored at 1
    with pytest.raises(ValueError, match="no rescoring limbs"):
        rescore_features(poses, "ochuman_unknown")


def test_rescore_nan_becomes_zero() -> None:
    def net(x: torch.Tensor) -> torch.Tensor:
        out = torch.ones(x.shape[0], 1)
        out[0] = float("nan")
        return out

    s = DEKRDecoder.apply_rescore(net, np.zeros((2, 74), np.float32), np.array([0.5, 0.25], np.float32))
    np.testing.assert_array_equal(s, [0.0, 0.25])


def test_finite_guard_keeps_finite_maps_and_zeroes_the_rest() -> None:
    from bupose.dekr.decode import _finite

    ok = torch.randn(3, 8, 8)
    assert _finite(ok) is ok  # a finite map is passed through, not copied
    huge = torch.full((4, 4), 3e38)  # finite values whose sum overflows to inf: kept as they are
    torch.testing.assert_close(_finite(huge), huge)
    bad = torch.randn(2, 5, 5)
    bad[0, 1, 2], bad[1, 3, 3], bad[1, 0, 0] = float("nan"), float("inf"), float("-inf")
    fixed = _finite(bad)
    assert bool(torch.isfinite(fixed).all())
    assert fixed[0, 1, 2] == 0 and fixed[1, 3, 3] == 0 and fixed[1, 0, 0] == 0
    keep = torch.isfinite(bad)
    torch.testing.assert_close(fixed[keep], bad[keep])


def test_decoder_errors_are_clear() -> None:
    dec = DEKRDecoder(_coco())
    meta = multi_scale_size((64, 64), 64)
    good = ScaleOutput(1.0, torch.zeros(18, 16, 16), torch.zeros(34, 16, 16), meta=meta)
    with pytest.raises(ValueError, match=r"scale 1\.0"):
        dec.decode([ScaleOutput(0.5, good.heatmap, good.offset, meta=meta)])
    with pytest.raises(ValueError, match=r"J\+1=18"):
        dec.decode([ScaleOutput(1.0, torch.zeros(15, 16, 16), good.offset, meta=meta)])
    with pytest.raises(ValueError, match="2J=34"):
        dec.decode([ScaleOutput(1.0, good.heatmap, torch.zeros(28, 16, 16), meta=meta)])
    with pytest.raises(ValueError, match="no meta"):
        dec.decode([ScaleOutput(1.0, good.heatmap, good.offset)])
    with pytest.raises(ValueError, match="both heatmap_flip and offset_flip"):
        dec.decode([ScaleOutput(1.0, good.heatmap, good.offset, good.heatmap, None, meta)])
    with pytest.raises(TypeError, match="nms_threshold"):
        DEKRDecoder(_coco(), nms_threshold=0.1)


def test_layout_defaults() -> None:
    coco = DEKRDecoder("coco17")
    crowd = DEKRDecoder("crowdpose14")
    assert (coco.nms_num_thre, coco.decrease, coco.nms_thre) == (8, 0.9, 0.05)
    assert (crowd.nms_num_thre, crowd.decrease) == (7, 0.8)
    assert (coco.keypoint_threshold, coco.max_num_people, coco.match_hmp) == (0.01, 30, False)
    assert crowd.flip_index_with_center.tolist() == [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13, 14]


class TestDEKRDecoderContract(DecoderContract):
    def make_decoder(self) -> DEKRDecoder:
        return DEKRDecoder("coco17")

    def make_outputs(self, batch: int, empty: bool) -> Any:
        rng = np.random.default_rng(1)
        images = []
        for b in range(batch):
            meta = multi_scale_size((120, 160), 64)
            h, w = meta.size_wh[1] // 4, meta.size_wh[0] // 4
            hm = torch.full((18, h, w), -0.5)
            off = torch.tensor(rng.normal(0, 1, (34, h, w)), dtype=torch.float32)
            if not empty:
                hm[-1, 5 + b, 7] = 0.9
                hm[:-1] = 0.3
            images.append([ScaleOutput(1.0, hm, off, hm.clone(), off.clone(), meta)])
        return images

    def decode(self, decoder: DEKRDecoder, outputs: Any) -> list[Poses]:
        return decoder.decode_batch(outputs)
