"""DEKRCodec.encode on augmented samples: the golden targets (shared/golden/dekr/targets_*.pt) from a
sample made of the fixture's annotations (identity augmentation), collation, and the training step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from bupose.core.plugins import get_registry
from bupose.core.specs import HeadSpec, import_object
from bupose.dekr.codec import DEKRCodec

sys.path.insert(0, str(Path(__file__).parent))
from _dekr_golden import fixture


def sample_from_fixture(fx: dict) -> dict:
    anns = json.loads(fx["annotations_json"])
    j = int(fx["num_joints"])
    return {
        "image": np.zeros((256, 256, 3), np.uint8),
        "keypoints": np.array([np.reshape(a["keypoints"], (j, 3)) for a in anns], dtype=np.float64),
        "areas": np.array([a["area"] for a in anns]),
        "iscrowd": np.array([a["iscrowd"] for a in anns]),
        "num_keypoints": np.array([a["num_keypoints"] for a in anns]),
        "masks": {64: fx["mask_output"].numpy()},
        "image_id": 1,
    }


@pytest.mark.parametrize(("variant", "layout"), [("coco", "coco17"), ("crowdpose", "crowdpose14")])
def test_codec_reproduces_golden_targets(variant: str, layout: str) -> None:
    fx = fixture(f"targets_{variant}.pt")
    spec = get_registry().get("heads", "dekr")
    assert isinstance(spec, HeadSpec)
    codec = import_object(spec.codec)(layout=layout, input_size=256)
    targets = codec.encode(sample_from_fixture(fx))
    assert set(targets) == {"heatmap", "heatmap_weight", "offset", "offset_weight"}
    for key, value in targets.items():
        assert value.dtype == torch.float32
        diff = float((value - fx[key]).abs().max())
        assert diff <= 1e-6, f"{key}: max|Δ| = {diff}"
    joints, _ = codec.persons(sample_from_fixture(fx))
    np.testing.assert_allclose(joints, fx["joints_output"].numpy(), atol=1e-9)


def test_codec_scaled_sample_matches_official_scaling() -> None:
    # a pure x2 scaling of the image: official targets at 128 from the scaled sample
    fx = fixture("targets_coco.pt")
    s = sample_from_fixture(fx)
    s2 = dict(s, keypoints=s["keypoints"] * np.array([2.0, 2.0, 1.0]), areas=s["areas"] * 4,
              masks={128: np.kron(fx["mask_output"].numpy(), np.ones((2, 2), np.float32))})
    big = DEKRCodec("coco17", 512).encode(s2)
    assert big["heatmap"].shape == (18, 128, 128)
    # offset weights are 1/sqrt(area) with the area in input px²: half the 256-input ones
    small = DEKRCodec("coco17", 256).encode(s)
    w_small = small["offset_weight"][small["offset_weight"] > 0].unique()
    w_big = big["offset_weight"][big["offset_weight"] > 0].unique()
    for w in (w_small / 2).tolist():
        assert torch.isclose(w_big, torch.tensor(w), rtol=1e-6, atol=0).any()
    # the small-person rule applies to the areas in input px²: the 500 px² person is 2000 px² at x2
    assert len(w_big) == len(w_small) + 1


def test_codec_errors_and_empty_sample() -> None:
    codec = DEKRCodec("crowdpose14", 64)
    empty = codec.encode({"keypoints": np.zeros((0, 14, 3)), "areas": np.zeros(0)})
    assert empty["heatmap"].shape == (15, 16, 16) and float(empty["heatmap"].abs().sum()) == 0
    assert torch.allclose(empty["heatmap_weight"], torch.full((15, 16, 16), 0.1))
    with pytest.raises(ValueError, match=r"\(N, 14, 3\)"):
        codec.encode({"keypoints": np.zeros((1, 17, 3))})
    with pytest.raises(ValueError, match="multiple of the stride"):
        DEKRCodec("coco17", 130)
    with pytest.raises(ValueError, match="mask for size 16"):
        codec.encode({"keypoints": np.zeros((0, 14, 3)), "masks": {16: np.ones((8, 8))}})


def test_default_collate_and_training_step() -> None:
    torch.manual_seed(0)
    from bupose.core.specs import FeatureShape
    from bupose.dekr.model import DEKRHead

    codec = DEKRCodec("coco17", 32)
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(2):
        kp = np.zeros((2, 17, 3))
        kp[:, :, 0] = rng.uniform(4, 28, (2, 17))
        kp[:, :, 1] = rng.uniform(4, 28, (2, 17))
        kp[:, :, 2] = 2
        samples.append({"keypoints": kp, "areas": np.array([2000.0, 3000.0])})
    batch = default_collate([codec.encode(s) for s in samples])
    assert batch["heatmap"].shape == (2, 18, 8, 8) and batch["offset_weight"].shape == (2, 34, 8, 8)
    head = DEKRHead({"concat": FeatureShape(30, 4)}, get_registry().get("layouts", "coco17"))
    feats = {"concat": torch.randn(2, 30, 8, 8)}
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        out = head(feats)
        loss = head.loss(out, batch)
        total = loss["heatmap_loss"] + loss["offset_loss"]
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.5 * losses[0]
    assert DEKRHead.train_defaults["lr"] == 1e-3


def _official_affine(center: tuple[float, float], scale: float, res: int, rot: float) -> np.ndarray:
    """The official RandomAffineTransform._get_affine_matrix (3x3), written from its definition."""
    h = 200 * scale
    t = np.array([[res / h, 0, res * (-center[0] / h + 0.5)], [0, res / h, res * (-center[1] / h + 0.5)], [0, 0, 1.0]])
    r = -np.deg2rad(rot)
    rot_m = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1.0]])
    t_mat = np.array([[1, 0, -res / 2], [0, 1, -res / 2], [0, 0, 1.0]])
    t_inv = np.array([[1, 0, res / 2], [0, 1, res / 2], [0, 0, 1.0]])
    return t_inv @ rot_m @ t_mat @ t


def test_codec_matches_official_under_rotation_and_translation() -> None:
    from bupose.dekr.targets import get_mask, targets_from_annotations, warp_mask

    fx = fixture("targets_coco.pt")
    anns = json.loads(fx["annotations_json"])
    center, scale, rot = (140.0, 115.0), 256 / 200 * 1.1, 17.0
    m_in = _official_affine(center, scale, 256, rot)[:2]
    m_out = _official_affine(center, scale, 64, rot)[:2]
    final_scale = (256 / (200 * scale)) ** 2
    expected = targets_from_annotations(anns, (256, 256), 17, kind="coco", output_size=64, output_matrix=m_out,
                                        area_scale=final_scale)
    kept = [a for a in anns if a["iscrowd"] == 0 or a["num_keypoints"] > 0]
    kp = np.array([np.reshape(a["keypoints"], (17, 3)) for a in kept], dtype=np.float64)

    def warp(points: np.ndarray, m: np.ndarray) -> np.ndarray:
        out = points.copy()
        out[:, :, :2] = points[:, :, :2] @ m[:, :2].T + m[:, 2]
        return out

    sample = {
        "keypoints": warp(kp, m_in),
        "keypoints_at": {64: warp(kp, m_out)},
        "areas": np.array([a["area"] for a in kept]) * final_scale,
        "iscrowd": np.array([a["iscrowd"] for a in kept]),
        "num_keypoints": np.array([a["num_keypoints"] for a in kept]),
        "masks": {64: warp_mask(get_mask(anns, 256, 256), m_out, 64)},
        "matrix": m_in,
        "flipped": False,
    }
    codec = DEKRCodec("coco17", 256)
    joints, area = codec.persons(sample)
    np.testing.assert_allclose(joints, expected["joints_output"], atol=1e-9)
    np.testing.assert_allclose(area, expected["area_output"], rtol=1e-9)
    got = codec.encode(sample)
    for key in ("heatmap", "heatmap_weight", "offset", "offset_weight"):
        diff = float(np.abs(got[key].numpy() - expected[key]).max())
        assert diff <= 1e-5 * max(1.0, float(np.abs(expected[key]).max())), f"{key}: max|Δ| = {diff}"
    # without the matrix the image-frame quirks are evaluated in the input frame instead
    plain = {k: v for k, v in sample.items() if k != "matrix"}
    assert not np.allclose(codec.persons(plain)[1], expected["area_output"])
