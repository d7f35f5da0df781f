"""COCO keypoint evaluation: our numbers must equal pycocotools' COCOeval to 1e-9."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bupose.core.eval import COCO_KEYS, EvalError, available_engines, evaluate
from bupose.core.eval._engine import oks_table, prepare_detections

ENGINES = available_engines()


def make_gt(seed: int, num_images: int = 60, k: int = 17) -> dict:
    """Random COCO-style GT: people of all sizes, unlabelled joints, crowd and 0-keypoint people."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    aid = 1
    for i in range(1, num_images + 1):
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480, "crowdIndex": float(rng.random())})
        for _ in range(int(rng.integers(0, 6))):
            w, h = rng.uniform(8, 300, 2)
            x0, y0 = rng.uniform(0, 340, 2)
            kp = np.zeros((k, 3))
            kp[:, 0] = x0 + rng.uniform(0, w, k)
            kp[:, 1] = y0 + rng.uniform(0, h, k)
            kp[:, 2] = rng.choice([0, 1, 2], k, p=[0.3, 0.2, 0.5])
            if rng.random() < 0.1:
                kp[:, 2] = 0
            kp[kp[:, 2] == 0, :2] = 0
            crowd = int(rng.random() < 0.05)
            anns.append(
                {
                    "id": aid, "image_id": i, "category_id": 1, "keypoints": kp.reshape(-1).round(2).tolist(),
                    "num_keypoints": int((kp[:, 2] > 0).sum()), "area": float(w * h * rng.uniform(0.3, 0.8)),
                    "bbox": [float(x0), float(y0), float(w), float(h)], "iscrowd": crowd,
                }
            )  # fmt: skip
            aid += 1
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def make_dets(gt: dict, seed: int, k: int = 17, bbox: bool = False) -> list[dict]:
    """Perturbed copies of GT people (various noise levels), random false positives, ties in score."""
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        kp = np.asarray(a["keypoints"], dtype=float).reshape(k, 3)
        x, y, w, h = a["bbox"]
        for _ in range(int(rng.integers(0, 3))):
            d = kp.copy()
            base = np.where(kp[:, 2:] > 0, kp[:, :2], [x + w / 2, y + h / 2])
            d[:, :2] = base + rng.normal(0, rng.choice([0.5, 3, 10, 30]), (k, 2))
            d[:, 2] = rng.random(k)
            e = {"image_id": a["image_id"], "category_id": 1, "keypoints": d.reshape(-1).tolist(),
                 "score": float(np.round(rng.random(), 1))}  # fmt: skip
            if bbox:
                e["bbox"] = [x, y, w * rng.uniform(0.5, 1.5), h]
            out.append(e)
    for img in gt["images"]:
        for _ in range(int(rng.integers(0, 4))):
            d = np.zeros((k, 3))
            d[:, :2] = rng.uniform(0, 400, (k, 2))
            d[:, 2] = 1
            e = {"image_id": img["id"], "category_id": 1, "keypoints": d.reshape(-1).tolist(), "score": float(rng.random())}
            if bbox:
                e["bbox"] = [0.0, 0.0, float(rng.uniform(10, 200)), float(rng.uniform(10, 200))]
            out.append(e)
    # an image with more than 20 detections (maxDets truncation)
    for _ in range(30):
        d = np.zeros((k, 3))
        d[:, :2] = rng.uniform(0, 300, (k, 2))
        e = {"image_id": 1, "category_id": 1, "keypoints": d.reshape(-1).tolist(), "score": float(rng.random())}
        if bbox:
            e["bbox"] = [1.0, 2.0, 30.0, 40.0]
        out.append(e)
    rng.shuffle(out)
    return out


def pycoco_stats(gt: dict, dets: list[dict], sigmas: np.ndarray | None = None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(gt)
        c.createIndex()
        if dets:
            d = c.loadRes(copy.deepcopy(dets))
        else:
            d = COCO()
            d.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            d.createIndex()
        e = COCOeval(c, d, "keypoints")
        if sigmas is not None:
            e.params.kpt_oks_sigmas = sigmas
        e.evaluate()
        e.accumulate()
        e.summarize()
    return np.asarray(e.stats)


def ours(metrics: dict) -> np.ndarray:
    return np.asarray([metrics[k] for k in COCO_KEYS])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pycocotools(engine: str, seed: int, tmp_path: Path) -> None:
    gt = make_gt(seed)
    dets = make_dets(gt, seed + 100)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    ref = pycoco_stats(gt, dets)
    got = ours(evaluate(dets, path, "coco17", engine=engine))
    assert np.abs(got - ref).max() <= 1e-9, (got, ref)
    assert 0.05 < got[0] < 0.95  # a non-trivial operating point


@pytest.mark.parametrize("engine", ENGINES)
def test_bbox_branch_and_results_file(engine: str, tmp_path: Path) -> None:
    """With a 'bbox' in the first entry pycocotools takes detection areas from boxes (changes APM/APL)."""
    gt = make_gt(5)
    dets = make_dets(gt, 7, bbox=True)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(dets))
    ref = pycoco_stats(gt, dets)
    got = ours(evaluate(tmp_path / "res.json", tmp_path / "gt.json", engine=engine))
    assert np.abs(got - ref).max() <= 1e-9
    no_box = [{k: v for k, v in d.items() if k != "bbox"} for d in dets]
    assert not np.allclose(ours(evaluate(no_box, gt, engine=engine)), got)


def test_pycocotools_coco_object_and_other_category(tmp_path: Path) -> None:
    gt = make_gt(3)
    dets = make_dets(gt, 4)
    dets += [dict(d, category_id=0) for d in dets[:50]]  # GroupPose-style label-0 entries: not evaluated
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(gt)
        c.createIndex()
    before = copy.deepcopy(c.dataset)
    got = ours(evaluate(dets, c))
    assert np.abs(got - pycoco_stats(gt, dets)).max() <= 1e-9
    assert c.dataset == before  # the caller's COCO object is not modified


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_results(engine: str) -> None:
    gt = make_gt(2)
    got = ours(evaluate([], gt, engine=engine))
    assert np.abs(got - pycoco_stats(gt, [])).max() <= 1e-9
    assert got[0] == 0.0


def test_no_ground_truth_gives_minus_one() -> None:
    gt = {"images": [{"id": 1, "width": 10, "height": 10, "file_name": "a.jpg"}], "annotations": [],
          "categories": [{"id": 1, "name": "person"}]}  # fmt: skip
    m = evaluate([{"image_id": 1, "category_id": 1, "keypoints": [1.0] * 51, "score": 0.5}], gt)
    assert all(v == -1.0 for v in m.values())


def test_ochuman_and_custom_sigmas_use_coco_protocol() -> None:
    gt = make_gt(8)
    dets = make_dets(gt, 9)
    assert ours(evaluate(dets, gt, "ochuman")) == pytest.approx(pycoco_stats(gt, dets), abs=1e-9)


def test_perfect_detections_score_one() -> None:
    gt = make_gt(11)
    dets = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt["annotations"]
        if not a["iscrowd"] and a["num_keypoints"] > 0
    ]
    m = evaluate(dets, gt)
    assert m["AP"] == pytest.approx(1.0) and m["AR"] == pytest.approx(1.0)


def test_oks_table_is_bitwise_pycocotools() -> None:
    gt = make_gt(21)
    dets = make_dets(gt, 22)
    gt_ids = {img["id"] for img in gt["images"]}
    prepared, kps = prepare_detections(dets, 17, gt_ids)
    sig = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]) / 10.0
    table = oks_table(gt["annotations"], prepared, kps, sig, [1], 20)
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(gt)
        c.createIndex()
        d = c.loadRes(copy.deepcopy(dets))
        e = COCOeval(c, d, "keypoints")
        e.evaluate()
    compared = 0
    for key, ref in e.ious.items():
        if len(ref) == 0:
            assert key not in table
            continue
        assert np.array_equal(table[key], ref), key
        compared += 1
    assert compared > 20


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[3].pop("score"), "result #3: missing key 'score'"),
        (lambda d: d[4].update(keypoints=[1.0] * 50), "result #4 (image_id"),
        (lambda d: d[5].update(keypoints=[float("nan")] * 51), "NaN"),
        (lambda d: d[6].update(image_id=99999), "image_id 99999 is not in the ground truth"),
        (lambda d: d[7].update(score="high"), "'score' must be a number"),
    ],
)
def test_malformed_results(mutate, message: str) -> None:
    gt = make_gt(1)
    dets = make_dets(gt, 2)
    mutate(dets)
    with pytest.raises(EvalError, match=message.replace("(", r"\(")):
        evaluate(dets, gt)


def test_malformed_ground_truth(tmp_path: Path) -> None:
    gt = make_gt(1)
    bad = tmp_path / "gt.json"
    bad.write_text("{not json")
    with pytest.raises(EvalError, match=r"gt\.json: not valid JSON"):
        evaluate([], bad)
    g2 = copy.deepcopy(gt)
    g2["annotations"][2]["keypoints"] = g2["annotations"][2]["keypoints"][:-3]
    aid = g2["annotations"][2]["id"]
    with pytest.raises(EvalError, match=f"annotation id {aid}: 'keypoints' has 48 values, expected 51"):
        evaluate([], g2)
    g3 = copy.deepcopy(gt)
    g3["annotations"][1]["area"] = -4.0
    with pytest.raises(EvalError, match="'area' must be a finite number >= 0"):
        evaluate([], g3)
    with pytest.raises(EvalError, match="results file not found"):
        evaluate(tmp_path / "missing.json", gt)
