"""BottomUpRandomAffine: identity, DEKR golden geometry, image/keypoint/mask consistency, flip, seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bupose.core.algorithms.geometry import crop_affine as affine_matrix
from bupose.core.data.transforms import BottomUpRandomAffine, to_tensor
from bupose.core.layouts import COCO17

GOLDEN = Path(__file__).parent / "data" / "golden" / "dekr"  # copied from /work/shared/golden/dekr


def _sample(size: int = 256, seed: int = 0, people: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    kps = np.concatenate([rng.uniform(10, size - 10, (people, 17, 2)), np.full((people, 17, 1), 2.0)], axis=2)
    mask = np.ones((size, size), np.float32)
    mask[20:60, 30:90] = 0
    return {"image": image, "keypoints": kps, "areas": rng.uniform(100, 5000, people), "mask": mask, "image_id": 3}


def test_identity_reproduces_input() -> None:
    s = _sample()
    t = BottomUpRandomAffine(256, heatmap_sizes=(256, 64), identity=True)
    for seed in range(3):
        out = t(s, seed)
        assert np.array_equal(out["image"], s["image"])
        assert np.array_equal(out["keypoints"], s["keypoints"])
        assert np.array_equal(out["areas"], s["areas"])
        assert np.array_equal(out["masks"][256], s["mask"])
        assert np.allclose(out["keypoints_at"][64][:, :, :2], s["keypoints"][:, :, :2] / 4)
        assert out["image_id"] == 3 and not out["flipped"]


def test_matches_dekr_golden_training_geometry() -> None:
    """RandomAffineTransform(256, 64, rot 0, scale [1, 1], translate 0) as in the DEKR targets fixture."""
    import torch

    fx = torch.load(GOLDEN / "targets_coco.pt", weights_only=True)
    joints = fx["joints_image"].numpy()  # (N, J + 1, 3) with the centre row
    mask = fx["mask_image"].numpy().astype(np.float32)
    h, w = fx["image_hw"]
    sample = {"image": np.zeros((h, w, 3), np.uint8), "keypoints": joints, "areas": fx["area_image"].numpy(), "mask": mask}
    t = BottomUpRandomAffine(256, heatmap_sizes=(64,), scale_range=(1, 1), max_rotation=0, max_translate=0, flip_prob=0)
    out = t(sample, 0)
    assert np.allclose(out["keypoints_at"][64], fx["joints_output"].numpy(), atol=1e-9)
    assert np.array_equal(out["masks"][64], fx["mask_output"].numpy())
    assert np.allclose(out["areas"], fx["area_output"].numpy())


def test_image_keypoints_and_mask_stay_aligned_under_flip_and_rotation() -> None:
    size = 256
    img = np.zeros((size, size, 3), np.uint8)
    rng = np.random.default_rng(1)
    kps = np.zeros((1, 17, 3))
    kps[0, :, 2] = 2
    for j in range(17):  # one coloured blob per joint, well apart
        x, y = 30 + (j % 5) * 48, 30 + (j // 5) * 60
        kps[0, j, :2] = (x, y)
        img[y - 4 : y + 5, x - 4 : x + 5] = (40 + 12 * j, 255, 0)
    mask = np.zeros((size, size), np.float32)
    mask[:, : size // 2] = 1
    sample = {"image": img, "keypoints": kps, "areas": np.array([1000.0]), "mask": mask}
    t = BottomUpRandomAffine(size, heatmap_sizes=(size, 64), scale_range=(0.9, 1.1), max_rotation=30, max_translate=10, flip_prob=1.0)
    out = t(sample, rng)
    assert out["flipped"]
    checked = 0
    for j in range(17):
        x, y, v = out["keypoints"][0, j]
        if v == 0:
            continue
        pix = out["image"][round(y), round(x)]
        src = COCO17.flip_index[j]  # output joint j is the mirrored input joint flip_index[j]
        assert pix[1] > 200 and abs(int(pix[0]) - (40 + 12 * src)) <= 3, (j, pix)
        checked += 1
    assert checked >= 10
    # the mask is warped with the same geometry as the image (mirror of the left half = right half)
    mask_img = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)
    again = t.apply({**sample, "image": mask_img}, out["aug_params"])
    agree = (again["image"][:, :, 0] > 127) == (out["masks"][size] > 0.5)
    assert agree.mean() > 0.995
    # per-size keypoints follow the official convention x' = size - 1 - x at that size
    assert np.allclose(out["keypoints_at"][64][0, :, 1], out["keypoints"][0, :, 1] / 4)
    assert np.allclose(out["keypoints_at"][64][0, :, 0], (out["keypoints"][0, :, 0] - size + 1) / 4 + 64 - 1)


def test_leaving_joints_get_v0_and_areas_scale() -> None:
    s = _sample(people=2)
    s["keypoints"][0, 3, :2] = (1.0, 1.0)
    t = BottomUpRandomAffine(128, scale_range=(0.5, 0.5), max_rotation=0, max_translate=0, flip_prob=0)
    out = t(s, 0)
    # 200 * scale original pixels = short side * 0.5 -> zoom x2 then resize to 128: factor 128 / 128 = 1.0
    mat, prod = affine_matrix((128, 128), 256 / 200 * 0.5, 128)
    assert np.allclose(out["matrix"], mat[:2]) and prod == pytest.approx(1.0)
    assert out["keypoints"][0, 3, 2] == 0
    inside = (out["keypoints"][..., 0] >= 0) & (out["keypoints"][..., 0] < 128) & (out["keypoints"][..., 1] >= 0) & (out["keypoints"][..., 1] < 128)
    assert np.array_equal(out["keypoints"][..., 2] > 0, inside)
    t2 = BottomUpRandomAffine(128, scale_range=(1, 1), max_rotation=0, max_translate=0, flip_prob=0)
    assert np.allclose(t2(s, 0)["areas"], s["areas"] * 0.25)


def test_deterministic_given_seed_and_centre_row_flip() -> None:
    s = _sample()
    s["keypoints"] = np.concatenate([s["keypoints"], s["keypoints"][:, :1]], axis=1)  # + centre row
    t = BottomUpRandomAffine(256, heatmap_sizes=(64, 128))
    a, b = t(s, 42), t(s, np.random.default_rng(42))
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["keypoints"], b["keypoints"])
    assert all(np.array_equal(a["masks"][k], b["masks"][k]) for k in (64, 128))
    t1, t2 = BottomUpRandomAffine(256, seed=5), BottomUpRandomAffine(256, seed=5)
    assert [t1(s)["aug_params"]["scale"] for _ in range(3)] == [t2(s)["aug_params"]["scale"] for _ in range(3)]
    outs = [t(s, i) for i in range(8)]
    assert len({o["aug_params"]["scale"] for o in outs}) == 8
    assert any(o["flipped"] for o in outs) and not all(o["flipped"] for o in outs)
    with pytest.raises(ValueError, match="keypoints have 5 rows"):
        t({**s, "keypoints": np.zeros((1, 5, 3))}, 0)


def test_to_tensor_normalises() -> None:
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 255
    x = to_tensor(img)
    assert tuple(x.shape) == (3, 4, 5)
    assert float(x[0, 0, 0]) == pytest.approx((1 - 0.485) / 0.229, rel=1e-6)
    assert float(x[2, 0, 0]) == pytest.approx(-0.406 / 0.225, rel=1e-6)
    with pytest.raises(ValueError, match="uint8 RGB"):
        to_tensor(np.zeros((4, 5), np.float32))


def test_dataset_sample_through_transform(tmp_path: Path) -> None:
    from bupose.core.data import load_dataset
    from bupose.core.data.synth import generate

    generate(tmp_path, num_images=2, size=160, seed=2, progress=False)
    ds = load_dataset(tmp_path)
    out = BottomUpRandomAffine(128, layout=ds.layout)(ds[0], 0)
    assert out["image"].shape == (128, 128, 3) and out["masks"][32].shape == (32, 32)
    assert json.dumps({"id": out["image_id"]})
