"""Results files (write/load, Poses round trip) and the ``bupose eval`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.eval import COCO_KEYS, EvalError, evaluate
from bupose.core.eval.results import load_results, poses_to_results, write_results
from bupose.core.poses import Poses


def _gt() -> dict:
    rng = np.random.default_rng(0)
    anns = []
    for i in range(1, 7):
        kp = np.concatenate([rng.uniform(20, 200, (17, 2)), np.full((17, 1), 2.0)], axis=1)
        anns.append({"id": i, "image_id": 1 + i % 3, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                     "num_keypoints": 17, "area": 9000.0, "bbox": [20.0, 20.0, 180.0, 180.0], "iscrowd": 0})  # fmt: skip
    images = [{"id": i, "file_name": f"{i}.png", "width": 256, "height": 256} for i in (1, 2, 3)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def test_write_results_numpy_types_and_poses_round_trip(tmp_path: Path) -> None:
    gt = _gt()
    by_image: dict[int, Poses] = {}
    for img in gt["images"]:
        kp = [np.asarray(a["keypoints"]).reshape(17, 3) for a in gt["annotations"] if a["image_id"] == img["id"]]
        k = np.stack(kp).astype(np.float32)
        k[:, :, 2] = 0.9
        by_image[img["id"]] = Poses(k, np.linspace(0.9, 0.5, len(k)).astype(np.float32), "coco17")
    entries = poses_to_results(by_image)
    entries[0]["score"] = np.float32(entries[0]["score"])  # json.dump alone would reject this
    path = write_results(tmp_path / "out" / "results.json", entries)
    loaded = load_results(path)
    assert len(loaded) == len(gt["annotations"])
    assert not list(path.parent.glob(".*tmp"))  # no temporary left behind
    back = Poses.from_coco([e for e in loaded if e["image_id"] == 2], "coco17", 17)
    assert np.allclose(back.keypoints, by_image[2].keypoints, atol=1e-4)
    m = evaluate(path, gt)
    assert m["AP"] == pytest.approx(1.0)


def test_write_results_rejects_nan(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="result #0"):
        write_results(tmp_path / "r.json", [{"image_id": 1, "category_id": 1, "keypoints": [float("nan")] * 3, "score": 1.0}])
    assert not (tmp_path / "r.json").exists()


def test_bupose_eval_command(tmp_path: Path) -> None:
    gt = _gt()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    dets = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.8} for a in gt["annotations"][:4]]
    (tmp_path / "res.json").write_text(json.dumps(dets))
    runner = CliRunner()
    cli = build_cli()
    res = runner.invoke(cli, ["eval", "--results", str(tmp_path / "res.json"), "--annotations", str(tmp_path / "gt.json"),
                              "--output", str(tmp_path / "metrics.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Average Precision  (AP) @[ OKS=0.50:0.95 | area=   all ]" in res.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics) == list(COCO_KEYS)
    assert metrics == evaluate(dets, gt)
    assert 0 < metrics["AR"] < 1
    (tmp_path / "bad.json").write_text('[{"image_id": 1}]')
    res = runner.invoke(cli, ["eval", "--results", str(tmp_path / "bad.json"), "--annotations", str(tmp_path / "gt.json")])
    assert res.exit_code != 0
    assert "result #0: missing key 'category_id'" in res.output
    res = runner.invoke(cli, ["eval", "--annotations", str(tmp_path / "gt.json")])
    assert res.exit_code != 0 and "--results" in res.output
