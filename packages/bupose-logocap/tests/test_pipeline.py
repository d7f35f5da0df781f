"""LOGO-CAP pipeline end to end: an official-format checkpoint (manifest_w32_coco.tsv + recipe with
the "headscaled" adjustment and joints_mlp.9.bias + 0.25, saved as a plain state_dict) through
``bupose run``; the pipeline against an independent re-composition of its official steps; batched
inference equal to batch size 1; ``--amp``; ``--no-flip``; the adaptation test option.

Images: 000000000011.png and 000000000012.png, copied byte for byte from shared/golden/dekr/e2e/
(there is no LOGO-CAP e2e fixture); run at --input-size 128 to keep the test small.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bupose.core.algorithms.nms import pose_nms
from bupose.core.cli import build_cli
from bupose.core.inference import load_model
from bupose.core.testing import bench_stage_results
from bupose.logocap.decode import LogoCapDecoder
from bupose.logocap.pipeline import LogoCapPipeline

sys.path.insert(0, str(Path(__file__).parent))
from _logocap_golden import DATA, build_state_dict, headscaled

pytest.importorskip("bupose.hrnet", reason="the pipeline tests need bupose-hrnet (test extra)")

IMAGES = DATA / "dekr_e2e"
NAMES = ("000000000011.png", "000000000012.png")
SIZE = 128
PEOPLE = 8  # centres decoded per image (official 30): the KAM costs ~0.8 GMAC per centre


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logocap") / "logocap-hrnet-w32-coco.pth.tar"
    torch.save(headscaled(build_state_dict()), path)
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
    return load_model("logocap", "hrnet_w32", ckpt, input_size=SIZE, max_num_people=PEOPLE)


def _official_steps(model: Any, img: np.ndarray, adaptation: str = "full") -> tuple[np.ndarray, np.ndarray]:
    """The official test path written out step by step with plain torch/cv2 calls (COCOTest
    preprocessing, [x, flip(x)] batch, Model.forward decode, get_final_preds), then the decoder's
    pose NMS. Returns image-pixel poses (K, J, 3) and scores (K,)."""
    h, w = img.shape[:2]
    # get_multi_scale_size at scale 1 (short side -> SIZE, long side to a multiple of 64)
    if w < h:
        w_in, h_in = SIZE, int((SIZE / w * h + 63) // 64 * 64)
        scale = np.array([w / 200.0, h_in / w_in * w / 200.0])
    else:
        h_in, w_in = SIZE, int((SIZE / h * w + 63) // 64 * 64)
        scale = np.array([w_in / h_in * h / 200.0, h / 200.0])
    center = np.array([int(w / 2.0 + 0.5), int(h / 2.0 + 0.5)], dtype=np.float64)
    src_w = scale[0] * 200
    # get_affine_transform's three points: centre, centre + (0, -s/2), third = b + (-d_y, d_x)
    half = 0.5 * src_w
    src = np.float32([center, center + np.array([0.0, -half]), center + np.array([-half, -half])])
    dst = np.float32([[w_in / 2, h_in / 2], [w_in / 2, h_in / 2 - w_in / 2], [0, h_in / 2 - w_in / 2]])
    warped = cv2.warpAffine(img, cv2.getAffineTransform(src, dst), (w_in, h_in), flags=cv2.INTER_LINEAR)
    x = torch.from_numpy(warped).permute(2, 0, 1).contiguous().float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    x = x[None]
    dec = LogoCapDecoder(model.layout, adaptation=adaptation, max_people=PEOPLE)
    with torch.no_grad():
        out = model(torch.cat([x, torch.flip(x, [3])]))
        poses, scores = dec.decode_network(
            out["heatmap"][0], out["offset"][0], out["embedding"][0], lambda t: model.head.kam(t, clamp=False),
            (h_in, w_in), out["heatmap"][1], out["offset"][1],
        )
    inv = cv2.getAffineTransform(dst, src)
    p = poses.numpy().copy()
    xy = p[..., :2].astype(np.float64)
    p[..., 0] = inv[0, 0] * xy[..., 0] + inv[0, 1] * xy[..., 1] + inv[0, 2]
    p[..., 1] = inv[1, 0] * xy[..., 0] + inv[1, 1] * xy[..., 1] + inv[1, 2]
    keep = pose_nms(torch.from_numpy(p[..., :2]), scores, ratio=0.05, min_joints=8, skip_empty=True)[:PEOPLE]
    return p[keep], scores.numpy()[keep]


def test_pipeline_equals_the_official_steps(estimator: Any, images: list[np.ndarray]) -> None:
    got = estimator.pipeline.predict_batch(images)
    for img, poses in zip(images, got):
        ref_p, ref_s = _official_steps(estimator.model, img)
        assert len(poses) == len(ref_s) >= 2  # the headscaled checkpoint detects people
        np.testing.assert_allclose(poses.keypoints, ref_p, rtol=0, atol=1e-4)
        np.testing.assert_allclose(poses.scores, ref_s, rtol=1e-6, atol=0)


def test_batched_equals_batch_size_one(estimator: Any, images: list[np.ndarray]) -> None:
    pipe = estimator.pipeline
    both = pipe.predict_batch(images + images[:1])
    single = [pipe.predict_batch([im])[0] for im in images]
    for a, b in zip(both, [*single, single[0]]):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-7)


def test_options_no_flip_adaptation_amp(estimator: Any, images: list[np.ndarray]) -> None:
    model = estimator.model
    base = estimator.pipeline.predict_batch(images[:1])[0]
    noflip = LogoCapPipeline(model, flip=False, input_size=SIZE, max_num_people=PEOPLE).predict_batch(images[:1])[0]
    assert len(noflip) > 0 and (len(noflip) != len(base) or np.abs(noflip.keypoints - base.keypoints).max() > 1e-3)
    part = LogoCapPipeline(model, input_size=SIZE, adaptation="partial", max_num_people=PEOPLE).predict_batch(images[:1])[0]
    ref_p, _ = _official_steps(model, images[0], "partial")
    assert len(part) == len(ref_p) > 0 and np.abs(part.keypoints - ref_p).max() <= 1e-4
    amp = LogoCapPipeline(model, input_size=SIZE, amp=True, max_num_people=PEOPLE).predict_batch(images[:1])[0]
    assert np.isfinite(amp.keypoints).all() and len(amp) > 0
    with pytest.raises(ValueError, match="adaptation"):
        LogoCapPipeline(model, adaptation="local")
    with pytest.raises(TypeError, match="max_people"):
        LogoCapPipeline(model, max_people=3)
    with pytest.raises(ValueError, match="single-scale"):
        LogoCapPipeline(model, scales=(0.5, 1.0))
    with pytest.raises(ValueError, match="RGB uint8"):
        estimator.pipeline.predict_batch([np.zeros((4, 4), np.uint8)])


def _run(args: list[str]) -> Any:
    res = CliRunner().invoke(build_cli(), args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_bupose_run_end_to_end(ckpt: Path, estimator: Any, images: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(["run", "--head", "logocap", "--backbone", "hrnet_w32", "--weights", str(ckpt), "--flip",
          "--input-size", str(SIZE), "--no-overlays", "--batch-size", "2", "--option", "adaptation=full", "--option", f"max_num_people={PEOPLE}",
          *(str(IMAGES / n) for n in NAMES), "--output", str(out)])
    results = json.loads((out / "results.json").read_text())
    expected = estimator.pipeline.predict_batch(images)
    assert len(results) == sum(len(p) for p in expected) > 0
    k = 0
    for poses in expected:  # image order, then the official (pose-NMS keep) order within an image
        mine = results[k : k + len(poses)]
        k += len(poses)
        assert len({str(e["image_id"]) for e in mine}) == 1
        for e, kp, s in zip(mine, poses.keypoints, poses.scores):
            assert e["category_id"] == 1
            np.testing.assert_allclose(np.array(e["keypoints"]).reshape(17, 3), kp, rtol=0, atol=1e-4)
            assert e["score"] == pytest.approx(float(s), rel=1e-6)
            xy = kp[:, :2]
            np.testing.assert_allclose(e["bbox"], [*xy.min(0), *(xy.max(0) - xy.min(0))], atol=1e-4)
    assert str(results[0]["image_id"]) != str(results[-1]["image_id"])


def test_bench_reports_forward_and_decode() -> None:
    bench_stage_results("logocap", "hrnet_w18_small", {"input_size": "64"})
