"""``bupose run`` end to end with an official-format checkpoint: manifest_w32_coco.tsv filled by the
recipe, saved under ``{'state_dict': ...}`` (PyTorch Lightning) with the old ``graph_*`` names.

Images: 000000000011.png / 000000000012.png, copied byte for byte from shared/golden/dekr/e2e/ (there
is no CenterGroup e2e fixture; the network and decode are checked against the official fixtures in
test_forward.py / test_flip_forward.py / test_postprocess.py). Official input size 512, flip test.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from _centergroup_golden import DATA, build_state_dict
from click.testing import CliRunner

from bupose.centergroup.pipeline import CenterGroupPipeline, FlipMergeWarning, prepare_image
from bupose.core.algorithms.geometry import back_project
from bupose.core.algorithms.image import normalize_images
from bupose.core.cli import build_cli
from bupose.core.inference import load_model
from bupose.core.testing import bench_stage_results

IMAGES = DATA / "dekr_e2e"
NAMES = ("000000000011.png", "000000000012.png")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sd = build_state_dict("manifest_w32_coco.tsv")
    old = {k.replace("tr_encoder", "graph_net").replace("group_model", "graph_model"): v for k, v in sd.items()}
    path = tmp_path_factory.mktemp("cg") / "centergroup_higherhrnet_w32_coco_512x512.pth"
    torch.save({"state_dict": old, "epoch": 1, "global_step": 2}, path)
    return path


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    out = []
    for n in NAMES:
        bgr = cv2.imread(str(IMAGES / n), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


@pytest.fixture(scope="module")
def estimator(ckpt: Path) -> Any:
    return load_model("centergroup", "higherhrnet_w32", ckpt)


def _by_hand(pipe: CenterGroupPipeline, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official steps composed one at a time for one image (batch 1)."""
    prep = prepare_image(image, 512)
    x = normalize_images([prep.image], "cpu").contiguous()
    (res,) = pipe.forward_tensors([x], torch.from_numpy(prep.valid_full[None]), torch.from_numpy(prep.valid_quarter[None]))
    return back_project(res.poses.numpy(), prep.meta), res.scores.numpy()


def test_bupose_run_end_to_end(ckpt: Path, estimator: Any, images: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(
        build_cli(),
        ["run", "--head", "centergroup", "--backbone", "higherhrnet_w32", "--weights", str(ckpt), "--flip",
         "--no-overlays", "--batch-size", "2", *(str(IMAGES / n) for n in NAMES), "--output", str(out)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    pipe = estimator.pipeline
    assert isinstance(pipe, CenterGroupPipeline) and pipe.flip and pipe.input_size == 512
    k = 0
    ids = []
    for image in images:  # image order, then the kept-centre (top-k) order within an image
        poses, scores = _by_hand(pipe, image)
        assert 3 <= len(poses) <= 30
        mine = results[k : k + len(poses)]
        k += len(poses)
        assert len({str(e["image_id"]) for e in mine}) == 1
        ids.append(str(mine[0]["image_id"]))
        for e, kp, s in zip(mine, poses, scores, strict=True):
            assert e["category_id"] == 1
            np.testing.assert_allclose(np.array(e["keypoints"]).reshape(17, 3), kp[:, :3], rtol=0, atol=1e-4)
            assert e["score"] == pytest.approx(float(s), rel=1e-6, abs=1e-12)
            xy = kp[:, :2]
            np.testing.assert_allclose(e["bbox"], [*xy.min(0), *(xy.max(0) - xy.min(0))], atol=1e-4)
    assert k == len(results)
    assert ids[0] != ids[1]


def test_batched_equals_batch_one(estimator: Any, images: list[np.ndarray]) -> None:
    pipe = CenterGroupPipeline(estimator.model, input_size=256)
    same = [images[0], images[0][:, ::-1].copy()]  # same input size: one network call of batch 2 (x2 flip)
    batched = pipe.predict_batch(same)
    for img, b in zip(same, batched, strict=True):
        (one,) = pipe.predict_batch([img])
        assert len(b) == len(one)
        np.testing.assert_allclose(b.keypoints[..., :2], one.keypoints[..., :2], rtol=0, atol=1e-4)
        np.testing.assert_allclose(b.keypoints[..., 2], one.keypoints[..., 2], rtol=0, atol=1e-4)
        np.testing.assert_allclose(b.scores, one.scores, rtol=0, atol=1e-5)


def test_merge_fallback_is_reported(estimator: Any, monkeypatch: pytest.MonkeyPatch, images: list[np.ndarray]) -> None:
    pipe = CenterGroupPipeline(estimator.model, input_size=128)
    import bupose.centergroup.pipeline as mod

    real = mod.select

    def drop_one(preds: dict, keep: torch.Tensor) -> dict:
        out = real(preds, keep)
        drop_one.calls += 1
        return {k: v[:, :-1] for k, v in out.items()} if drop_one.calls % 2 == 0 else out

    drop_one.calls = 0
    monkeypatch.setattr(mod, "select", drop_one)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (poses,) = pipe.predict_batch([images[1]])
    assert any(issubclass(w.category, FlipMergeWarning) and "unflipped branch" in str(w.message) for w in caught)
    assert pipe.merge_failures == 1
    assert 3 <= len(poses) <= 30 and np.isfinite(poses.keypoints).all()


def test_multi_scale_runs_and_differs(estimator: Any, images: list[np.ndarray]) -> None:
    single = CenterGroupPipeline(estimator.model, input_size=128).predict_batch([images[0]])[0]
    multi = CenterGroupPipeline(estimator.model, input_size=128, scales=(0.5, 1.0, 2.0)).predict_batch([images[0]])[0]
    assert 3 <= len(multi) <= 30
    assert np.isfinite(multi.keypoints).all()
    assert len(multi) != len(single) or not np.allclose(multi.keypoints, single.keypoints)


def test_bench_reports_forward_and_decode() -> None:
    """`bupose bench --head centergroup`: network vs node extraction + grouping + flip merge, side by side."""
    bench_stage_results("centergroup", "hrnet_w18_small", {"input_size": "64"})
