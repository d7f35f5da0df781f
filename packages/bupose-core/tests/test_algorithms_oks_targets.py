"""bupose.core.algorithms.oks (numpy == torch == pycocotools) and .targets."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from bupose.core.algorithms.oks import oks_matrix, oks_matrix_torch, oks_torch
from bupose.core.algorithms.targets import (
    displacement_targets,
    gaussian_heatmaps,
    instance_area,
    instance_centers,
)

SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = np.zeros((4, 17, 3))
    gt[:, :, :2] = rng.uniform(10, 200, (4, 17, 2))
    gt[:, :, 2] = rng.integers(0, 3, (4, 17))
    gt[3, :, 2] = 0  # no labelled joint: the box rule
    boxes = np.array([[10.0, 10.0, 100.0, 120.0]] * 4)
    areas = rng.uniform(500, 9000, 4)
    dets = np.concatenate([gt[:, :, :2] + rng.normal(0, 5, (4, 17, 2)), rng.uniform(0, 300, (3, 17, 2))])
    return dets, gt, areas, boxes


def test_oks_numpy_equals_pycocotools_and_torch() -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dets, gt, areas, boxes = _scene(0)
    anns = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "keypoints": gt[i].reshape(-1).tolist(),
            "area": float(areas[i]),
            "bbox": boxes[i].tolist(),
            "iscrowd": 0,
            "num_keypoints": int((gt[i, :, 2] > 0).sum()),
        }
        for i in range(len(gt))
    ]
    ds = {
        "images": [{"id": 1, "width": 320, "height": 320}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ds
        coco.createIndex()
        res = coco.loadRes(
            [
                {
                    "image_id": 1,
                    "category_id": 1,
                    "keypoints": np.concatenate([d, np.ones((17, 1))], 1).reshape(-1).tolist(),
                    "score": 1.0 - 0.1 * i,
                }
                for i, d in enumerate(dets)
            ]
        )
        ev = COCOeval(coco, res, "keypoints")
        ev.params.imgIds = [1]
        ev.evaluate()
    ref = np.asarray(ev.ious[(1, 1)])
    ours = oks_matrix(dets, gt, areas, boxes, SIGMAS)
    assert np.array_equal(ours, ref)  # bit-identical
    twin = oks_matrix_torch(
        torch.tensor(dets), torch.tensor(gt), torch.tensor(areas), torch.tensor(boxes), SIGMAS
    )
    np.testing.assert_allclose(twin.numpy(), ours, rtol=0, atol=1e-12)
    # area scale = scaling the areas; without boxes the joint-less ground truth scores 0
    np.testing.assert_allclose(
        oks_matrix(dets, gt, areas, boxes, SIGMAS, area_scale=0.53),
        oks_matrix(dets, gt, areas * 0.53, boxes, SIGMAS),
        rtol=0,
        atol=1e-15,
    )
    no_box = oks_matrix(dets, gt, areas, None, SIGMAS)
    assert np.all(no_box[:, 3] == 0) and np.array_equal(no_box[:, :3], ours[:, :3])
    twin_nb = oks_matrix_torch(torch.tensor(dets), torch.tensor(gt), torch.tensor(areas), None, SIGMAS)
    np.testing.assert_allclose(twin_nb.numpy(), no_box, rtol=0, atol=1e-12)
    assert oks_matrix(dets[:0], gt, areas, boxes, SIGMAS).shape == (0, 4)


def test_oks_torch_is_differentiable_and_one_at_the_truth() -> None:
    _dets, gt, areas, _boxes = _scene(1)
    pred = torch.tensor(gt[:3, :, :2], requires_grad=True)
    val = oks_torch(pred, torch.tensor(gt[:3]), torch.tensor(areas[:3]), SIGMAS)
    assert torch.allclose(val, torch.ones(3, dtype=torch.float64))
    (1 - oks_torch(pred + 3.0, torch.tensor(gt[:3]), torch.tensor(areas[:3]), SIGMAS)).sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_gaussian_heatmaps() -> None:
    joints = np.array([[[10.0, 12.0, 2.0], [5.0, 5.0, 0.0], [40.0, 3.0, 1.0]]])  # 2nd unlabelled, 3rd outside
    hm, w = gaussian_heatmaps(joints, (32, 36), [2.0, 2.0, 4.0], bg_weight=0.1)
    assert hm.shape == w.shape == (3, 32, 36) and hm.dtype == np.float32
    assert hm[0, 12, 10] == 1.0 and hm[0].argmax() == 12 * 36 + 10
    assert hm[0, 12, 12] == pytest.approx(np.exp(-4 / 8))
    assert not hm[1].any() and not hm[2].any() and np.all(w[1] == np.float32(0.1))
    # HRNet window: [floor(x - 3s - 1), ceil(x + 3s + 2)) = [3, 18) in x
    assert (
        w[0, 12, 3] == 1
        and w[0, 12, 2] == np.float32(0.1)
        and w[0, 12, 17] == 1
        and w[0, 12, 18] == np.float32(0.1)
    )
    full, fw = gaussian_heatmaps(joints[:, :1], 32, 2.0, truncate=None, min_value=0.015)
    assert np.all(fw == 1) and full[0, 0, 30] == 0 and full[0, 12, 15] == pytest.approx(np.exp(-25 / 8))
    assert full[0][full[0] > 0].min() >= 0.015
    two = np.array([[[10.0, 10.0, 1.0]], [[11.0, 10.0, 1.0]]])
    hm2, _ = gaussian_heatmaps(two, 32, 2.0)
    assert hm2[0, 10, 10] == 1.0 and hm2[0, 10, 11] == 1.0  # max over instances


def test_displacement_targets_smaller_instance_wins() -> None:
    joints = np.array([[[12.0, 14.0, 1.0]], [[20.0, 10.0, 1.0]]])
    centers = np.array([[16.0, 16.0, 1.0], [17.0, 16.0, 1.0]])
    off, w = displacement_targets(joints, centers, np.array([400.0, 100.0]), 32, radius=4)
    assert off.shape == (2, 32, 32)
    # overlap column x = 15: the second (smaller) instance holds it
    assert off[0, 16, 15] == 15 - 20.0 and w[0, 16, 15] == np.float32(1 / 10)
    assert off[0, 16, 12] == 12 - 12.0 and off[1, 16, 12] == 16 - 14.0 and w[0, 16, 12] == np.float32(1 / 20)
    off2, _ = displacement_targets(joints[::-1], centers[::-1], np.array([100.0, 400.0]), 32, radius=4)
    assert off2[0, 16, 15] == 15 - 20.0  # order does not matter: the larger one cannot overwrite
    none, _ = displacement_targets(joints, centers * [1, 1, 0], np.array([1.0, 1.0]), 32)
    assert not none.any()
    with pytest.raises(ValueError, match="2 instances"):
        displacement_targets(joints, centers, np.array([1.0]), 32)


def test_instance_area_and_centers() -> None:
    j = np.array([[[10.0, 20.0, 1.0], [40.0, 60.0, 2.0], [0.0, 0.0, 0.0]]])
    assert instance_area(j)[0] == 40.0**2 + 60.0**2  # unlabelled (0, 0) row counts (DEKR)
    assert instance_area(j, visible_only=True)[0] == 30.0**2 + 40.0**2
    assert instance_area(j, "box", visible_only=True)[0] == 30.0 * 40.0
    assert instance_area(np.zeros((0, 3, 3))).shape == (0,)
    c, has = instance_centers(j)
    np.testing.assert_allclose(c[0], [25.0, 40.0])
    assert has.tolist() == [True]
    c2, _ = instance_centers(j + np.array([[[0, 0, 0], [0, 0, 0], [100, 100, 0]]]), "sum_over_visible")
    np.testing.assert_allclose(c2[0], [75.0, 90.0])  # (10 + 40 + 100) / 2 visible
    c3, has3 = instance_centers(j, in_map=(50, 50))
    np.testing.assert_allclose(c3[0], [10.0, 20.0])
    assert has3.tolist() == [True]
    c4, has4 = instance_centers(np.zeros((1, 3, 3)), empty=(-1.0, -1.0))
    assert has4.tolist() == [False] and c4.tolist() == [[-1.0, -1.0]]
