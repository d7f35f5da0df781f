"""LOGO-CAP decoding on crafted head outputs vs the official eval forward + LogoCapInference
(fixture decode_coco.pt from shared/golden/logocap/, tolerances from its README) and the pose NMS
fixture (pose_nms.pt)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bupose.core.algorithms.geometry import WarpMeta
from bupose.core.plugins import get_registry
from bupose.core.specs import FeatureShape
from bupose.core.weights import load_state_dict_strict
from bupose.logocap.convert import HEAD_PREFIXES
from bupose.logocap.decode import COCO_SIGMAS, DecodeTrace, LogoCapDecoder, clamped_bilinear, kem_grid
from bupose.logocap.model import LogoCapHead

sys.path.insert(0, str(Path(__file__).parent))
from _logocap_golden import build_state_dict, fixture

LAYOUT = get_registry().get("layouts", "coco17")


@pytest.fixture(scope="module")
def fx() -> dict:
    return fixture("decode_coco.pt")


@pytest.fixture(scope="module")
def head(fx: dict) -> LogoCapHead:
    h = LogoCapHead({"concat": FeatureShape(480, 4)}, LAYOUT)
    sd = build_state_dict(keep=lambda k: k.startswith(HEAD_PREFIXES))
    sd["joints_mlp.9.bias"] = fx["weights/joints_mlp.9.bias"].clone()
    load_state_dict_strict(h, sd, "decode fixture head")
    return h.eval()


def meta_of(fx: dict) -> WarpMeta:
    h_in, w_in = fx["meta/input_hw"]
    return WarpMeta(
        image_hw=tuple(fx["meta/image_hw"]), size_wh=(w_in, h_in),
        center=tuple(float(v) for v in fx["meta/center"]), scale=tuple(float(v) for v in fx["meta/scale"]),
    )


def run(fx: dict, head: LogoCapHead, level: str):
    trace = DecodeTrace()
    dec = LogoCapDecoder(LAYOUT, adaptation=level)
    with torch.no_grad():
        poses = dec.decode(
            fx["raw/heatmap"][0], fx["raw/offset"][0].float(), fx["raw/embedding"][0].float(),
            lambda x: head.kam(x, clamp=False), meta_of(fx),
            fx["raw/heatmap_flip"][0], fx["raw/offset_flip"][0].float(), trace=trace,
        )
    return poses, trace


def test_layout_sigmas_are_the_official_coco_sigmas() -> None:
    assert tuple(LAYOUT.sigmas) == pytest.approx(COCO_SIGMAS, abs=1e-9)


def test_clamped_bilinear_quirks() -> None:
    m = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    pts = torch.tensor([0.5, -3.0, 3.0, 3.5, 1.25])
    ys = torch.tensor([0.0, 1.0, 0.0, 0.0, 2.0])
    out = clamped_bilinear(m, pts, ys)[0]
    assert out[0] == pytest.approx(0.5)  # interior
    assert out[1] == pytest.approx(4.0)  # negative x replicates the first column
    assert out[2] == 0.0  # exactly on the last column: both weights 0
    assert out[3] == pytest.approx(1.5)  # beyond it the value fades back in (0.5 * m[0, 3])
    assert out[4] == 0.0  # on the last row (y = H - 1): weight 0
    ch = torch.zeros(5, dtype=torch.long)
    assert torch.equal(clamped_bilinear(m, pts, ys, ch), out)


def test_kem_grid_layout() -> None:
    poses = torch.tensor([[[10.0, 20.0]] * 17])
    g = kem_grid(poses, COCO_SIGMAS)
    assert g.shape == (1, 11, 11, 17, 2)
    assert torch.equal(g[0, 5, 5], poses[0])
    step_hip = 0.107 / 0.025
    assert float(g[0, 5, 6, 11, 0] - 10.0) == pytest.approx(step_hip, rel=1e-6)  # column = dx
    assert float(g[0, 4, 5, 11, 1] - 20.0) == pytest.approx(-step_hip, rel=1e-6)  # row = dy
    assert float(g[0, 5, 10, 1, 0] - 10.0) == pytest.approx(5.0, rel=1e-6)  # eyes: 1 px steps


@pytest.mark.parametrize("level", ["full", "partial", "none"])
def test_decode_matches_official(fx: dict, head: LogoCapHead, level: str) -> None:
    case = f"case/{level}/"
    poses, tr = run(fx, head, level)
    # centres: exact
    assert torch.equal(tr.centers_top, fx[case + "kem/centers_top"])
    assert torch.equal(tr.center_mask, fx[case + "kem/mask"])
    assert float((tr.center_poses - fx[case + "kem/center_poses"]).abs().max()) <= 1e-4
    if level != "none":
        assert float((tr.kam_raw - fx[case + "kam/raw"]).abs().max()) <= 1e-5
    assert torch.allclose(tr.out_centers, fx[case + "out/centers"], atol=1e-6)
    ref = fx[case + "out/poses"]
    assert tr.out_poses.shape == ref.shape
    err = (tr.out_poses[..., :2] - ref[..., :2]).abs().amax(dim=-1)  # (M, J)
    tol = torch.full_like(err, 1e-3)
    if level == "full":
        v = fx[case + "global/top3_value"]
        near_tie = (v[..., 0] - v[..., 1]) < 1e-6
        tol[near_tie[: tol.shape[0]]] = 0.5
        assert float((tr.global_top3_value - v).abs().max()) <= 1e-6
    assert bool((err <= tol).all()), float(err.max())
    assert float((tr.out_poses[..., 2] - ref[..., 2]).abs().max()) <= 1e-5
    assert float((tr.out_scores - fx[case + "out/scores"]).abs().max()) <= 1e-5
    assert float((tr.out_initial_poses - fx[case + "out/initial_poses"]).abs().max()) <= 1e-4
    # back-projection, pose NMS, top-30
    assert tr.nms_keep == list(fx[case + "final/nms_keep"])
    fin = fx[case + "final/poses"].double().numpy()
    assert poses.keypoints.shape == fin.shape
    ferr = np.abs(poses.keypoints[..., :2] - fin[..., :2]).max(axis=-1)  # (K, J) image pixels
    ftol = tol[tr.nms_keep].numpy() * (300 / 256)  # input -> image pixels
    assert bool((ferr <= ftol).all()), float(ferr.max())
    assert np.abs(poses.scores - fx[case + "final/scores"].double().numpy()).max() <= 1e-5


def test_adaptation_levels_differ_and_bad_level(fx: dict, head: LogoCapHead) -> None:
    full, _ = run(fx, head, "full")
    none, _ = run(fx, head, "none")
    assert np.abs(full.keypoints[:, :, :2] - none.keypoints[:, :, :2]).max() > 0.5
    with pytest.raises(ValueError, match="adaptation"):
        LogoCapDecoder(LAYOUT, adaptation="global")


def test_pose_nms_matches_official() -> None:
    fx = fixture("pose_nms.pt")
    w_in, h_in = fx["input_wh"]
    meta = WarpMeta(image_hw=tuple(fx["image_hw"]), size_wh=(w_in, h_in),
                    center=tuple(float(v) for v in fx["center"]), scale=tuple(float(v) for v in fx["scale"]))
    trace = DecodeTrace()
    dec = LogoCapDecoder(LAYOUT, nms_ratio=fx["cfg/SCORE_THRESHOLD"], nms_joints=fx["cfg/NUM_JOINTS"],
                         max_people=fx["cfg/MAX_NUM_PEOPLE"])
    out = dec.finalize(fx["poses_input"], fx["scores"], meta, trace)
    assert trace.nms_keep == list(fx["keep"])
    assert np.abs(out.keypoints - fx["final_poses"].double().numpy()).max() <= 1e-4
    assert np.abs(out.scores - fx["final_scores"].double().numpy()).max() == 0
    from bupose.core.algorithms.geometry import back_project
    from bupose.core.algorithms.nms import pose_overlap

    img = back_project(fx["poses_input"].numpy(), meta)[..., :2]
    assert np.abs(img - fx["poses_image"].numpy()).max() <= 1e-4
    counts = fx["pair_close_joint_counts"]
    over = pose_overlap(torch.from_numpy(img), ratio=0.05, min_joints=8)
    assert torch.equal(over, counts > 8)
