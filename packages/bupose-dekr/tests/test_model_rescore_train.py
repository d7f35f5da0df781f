"""Rescoring-net training from predictions: OKS targets (checked against pycocotools), features from
the decoder's feature function, and a tiny synthetic fit."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from bupose.core.plugins import get_registry
from bupose.core.poses import Poses
from bupose.dekr.rescore_train import best_match_oks, collect_rescore_data, oks_matrix, train_rescore_net

SIGMAS = np.array(get_registry().get("layouts", "coco17").sigmas)


def _people(rng: np.random.Generator, n: int) -> np.ndarray:
    kp = np.zeros((n, 17, 3))
    kp[:, :, 0] = rng.uniform(20, 200, (n, 1)) + rng.uniform(-20, 20, (n, 17))
    kp[:, :, 1] = rng.uniform(20, 200, (n, 1)) + rng.uniform(-40, 40, (n, 17))
    kp[:, :, 2] = 2
    return kp


def test_oks_matches_pycocotools() -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    gt = _people(rng, 3)
    gt[1, :5, 2] = 0
    gt[2, :, :] = 0  # no labelled joints: the box-distance form
    boxes = np.array([[10, 10, 80, 120], [50, 40, 60, 100], [100, 100, 30, 30]], dtype=float)
    areas = np.array([5000.0, 3000.0, 900.0])
    dets = gt[[0, 1, 0]].copy()
    dets[:, :, :2] += rng.normal(0, 3, dets[:, :, :2].shape)
    dets[2, :, :2] = 115.0
    ds = {
        "images": [{"id": 1, "width": 300, "height": 300}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "keypoints": gt[i].reshape(-1).tolist(),
             "num_keypoints": int((gt[i, :, 2] > 0).sum()), "area": float(areas[i]), "bbox": boxes[i].tolist(),
             "iscrowd": 0}
            for i in range(3)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ds
        coco.createIndex()
        res = coco.loadRes([
            {"image_id": 1, "category_id": 1, "keypoints": d.reshape(-1).tolist(), "score": 1.0 - 0.1 * i}
            for i, d in enumerate(dets)
        ])
        ev = COCOeval(coco, res, "keypoints")
        ev.params.imgIds = [1]
        ev.evaluate()
    ref = np.asarray(ev.ious[(1, 1)])
    ours = oks_matrix(dets, gt, areas, boxes, SIGMAS)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    best = best_match_oks(dets, gt, areas, boxes, SIGMAS)
    expected = ref.max(axis=1)
    assert expected[2] == 1.0  # inside the box of the joint-less ground truth: OKS exactly 1 ...
    expected[2] = 0.0  # ... which the official rescore data turns into 0
    np.testing.assert_allclose(best, expected)
    exact = best_match_oks(gt[:1], gt[:1], areas[:1], boxes[:1], SIGMAS)
    assert exact.tolist() == [0.0]  # official: a target of exactly 1 becomes 0


def test_collect_and_train_on_synthetic_predictions() -> None:
    rng = np.random.default_rng(1)
    samples = []
    for i in range(40):
        gt = _people(rng, 3)
        samples.append({"image": np.zeros((8, 8, 3), np.uint8), "keypoints": gt,
                        "areas": np.full(3, 6000.0), "bboxes": np.tile([0, 0, 80, 80], (3, 1)),
                        "iscrowd": np.zeros(3), "image_id": i})
    noise = iter(rng.uniform(0.5, 25, 1000))
    order = iter(samples)

    def predict(_image: np.ndarray) -> Poses:
        gt = next(order)["keypoints"]
        kp = gt.copy()
        for p in range(len(kp)):
            kp[p, :, :2] += rng.normal(0, next(noise), (17, 2))
        kp[:, :, 2] = rng.uniform(0.1, 1, (3, 17))
        return Poses(kp, kp[:, :, 2].mean(axis=1), "coco17")

    data = collect_rescore_data(predict, samples, "coco17", SIGMAS, progress=False)
    assert data.features.shape == (120, 74) and data.targets.shape == (120,)
    assert data.targets.min() >= 0 and data.targets.max() < 1 and data.targets.std() > 0.05
    net, history = train_rescore_net(data, epochs=60, batch_size=32, progress=False)
    assert history[-1] < 0.5 * history[0]
    import torch

    with torch.no_grad():
        out = net(torch.from_numpy(data.features))
    assert out.shape == (120, 1)
    with pytest.raises(ValueError, match="no pose"):
        collect_rescore_data(lambda _img: Poses.empty(17, "coco17"), samples[:2], "coco17", SIGMAS, progress=False)
