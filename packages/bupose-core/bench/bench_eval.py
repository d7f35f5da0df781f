"""Keypoint evaluation speed: bupose.core.eval vs pycocotools (and plain faster-coco-eval).

Every contender starts from the same inputs — a GT json path and an in-memory results list — and
produces the 10 COCO keypoint stats; the script prints median wall times, the speed-up over
pycocotools and the largest difference of any stat (must be 0, or at most 1e-9).

    python packages/bupose-core/bench/bench_eval.py [--images 5000] [--repeats 3] [--from-synth DIR]

By default the ground truth is random COCO-like people on 5000 images (sizes from tiny to large,
unlabelled joints, crowd regions and keypoint-less people), detections are perturbed copies of the
GT plus false positives; ``--from-synth DIR`` uses a ``bupose data synth`` output instead.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def random_gt(num_images: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    images, anns = [], []
    aid = 1
    for i in range(1, num_images + 1):
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480})
        for _ in range(int(rng.integers(0, 5))):
            h = float(np.exp(rng.uniform(np.log(12), np.log(460))))
            w = h * rng.uniform(0.3, 0.7)
            x0, y0 = rng.uniform(-w / 4, 640 - w), rng.uniform(-h / 4, 480 - h)
            kp = np.zeros((17, 3))
            kp[:, 0] = x0 + rng.uniform(0, w, 17)
            kp[:, 1] = y0 + rng.uniform(0, h, 17)
            kp[:, 2] = rng.choice([0, 1, 2], 17, p=[0.3, 0.15, 0.55])
            if rng.random() < 0.35:
                kp[:, 2] = 0
            kp[kp[:, 2] == 0, :2] = 0
            anns.append({
                "id": aid, "image_id": i, "category_id": 1, "keypoints": kp.reshape(-1).round(2).tolist(),
                "num_keypoints": int((kp[:, 2] > 0).sum()), "area": float(w * h * rng.uniform(0.3, 0.7)),
                "bbox": [float(x0), float(y0), float(w), float(h)], "iscrowd": int(rng.random() < 0.03),
            })  # fmt: skip
            aid += 1
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def detections(gt: dict[str, Any], seed: int = 1) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    k = len(gt["annotations"][0]["keypoints"]) // 3 if gt["annotations"] else 17
    out = []
    for a in gt["annotations"]:
        kp = np.asarray(a["keypoints"], dtype=float).reshape(k, 3)
        x, y, w, h = a["bbox"]
        for _ in range(int(rng.integers(1, 6))):
            d = kp.copy()
            base = np.where(kp[:, 2:] > 0, kp[:, :2], [x + w / 2, y + h / 2])
            d[:, :2] = base + rng.normal(0, rng.choice([1, 4, 12, 40]), (k, 2))
            d[:, 2] = rng.random(k)
            out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": d.reshape(-1).tolist(), "score": float(rng.random())})
    for img in gt["images"]:
        for _ in range(int(rng.integers(0, 4))):
            d = np.concatenate([rng.uniform(0, 480, (k, 2)), np.ones((k, 1))], axis=1)
            out.append({"image_id": img["id"], "category_id": 1, "keypoints": d.reshape(-1).tolist(), "score": float(rng.random())})
    return out


def run_pycocotools(gt_path: str, results: list[dict[str, Any]]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def run_faster_plain(gt_path: str, results: list[dict[str, Any]]) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO(gt_path)
    dt = gt.loadRes(results)
    ev = COCOeval_faster(gt, dt, "keypoints", print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.asarray(ev.stats[:10])


def run_ours(engine: str) -> Callable[[str, list[dict[str, Any]]], np.ndarray]:
    from bupose.core.eval import COCO_KEYS, evaluate

    def run(gt_path: str, results: list[dict[str, Any]]) -> np.ndarray:
        m = evaluate(results, gt_path, "coco17", engine=engine)
        return np.asarray([m[k] for k in COCO_KEYS])

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--from-synth", type=Path, default=None, help="a `bupose data synth` folder (coco17)")
    args = ap.parse_args()

    from bupose.core.eval import available_engines

    with tempfile.TemporaryDirectory() as tmp:
        if args.from_synth:
            gt_path = str(args.from_synth / "annotations.json")
            gt = json.loads(Path(gt_path).read_text())
            source = f"bupose data synth output {args.from_synth}"
        else:
            gt = random_gt(args.images)
            gt_path = str(Path(tmp) / "gt.json")
            Path(gt_path).write_text(json.dumps(gt))
            source = "random COCO-like ground truth"
        results = detections(gt)
        n_kp = sum(a["num_keypoints"] > 0 and not a["iscrowd"] for a in gt["annotations"])
        print(f"data: {source}: {len(gt['images'])} images, {len(gt['annotations'])} GT ({n_kp} with keypoints), {len(results)} detections")

        contenders: dict[str, Callable[[str, list[dict[str, Any]]], np.ndarray]] = {"pycocotools COCOeval": run_pycocotools}
        for engine in available_engines():
            contenders[f"bupose eval (engine={engine})"] = run_ours(engine)
        if "faster" in available_engines():
            contenders["faster-coco-eval plain"] = run_faster_plain
        times: dict[str, list[float]] = {name: [] for name in contenders}
        stats: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                res = copy.deepcopy(results)  # loadRes mutates its input; excluded from timing
                t0 = time.perf_counter()
                stats[name] = fn(gt_path, res)
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["pycocotools COCOeval"])
    ref = stats["pycocotools COCOeval"]
    print(f"{'contender':<34} {'median s':>9} {'min s':>7} {'speed-up':>9} {'max |dstat|':>12}")
    for name in contenders:
        med = statistics.median(times[name])
        diff = float(np.abs(stats[name] - ref).max())
        print(f"{name:<34} {med:>9.3f} {min(times[name]):>7.3f} {base / med:>8.2f}x {diff:>12.3g}")
    print("stats (pycocotools):", " ".join(f"{v:.4f}" for v in ref))
    print(f"repeats: {args.repeats} (interleaved); times include reading the GT json and preparing the results")


if __name__ == "__main__":
    main()
