"""End to end: an official-format ``{'weights': ...}`` file built from the manifest by the golden recipe,
loaded with weights_only=True through ``bupose run`` and ``bupose convert``; results equal the pipeline's
verified stages (network -> fusion -> peaks -> grouping) run directly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _sp_golden import load, official_state_dict
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.testing import bench_stage_results


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "PoseNet_52_epoch.pth"
    sd = official_state_dict()
    torch.save({"weights": sd, "optimizer_weight": {"state": {}, "param_groups": []}, "train_loss": 0.01, "epoch": 52}, path)
    return path


def test_run_writes_results(official_file: Path, tmp_path: Path) -> None:
    img = load("fusion_multiscale_flip.pt")["input/image_bgr_uint8"].numpy()
    image_path = tmp_path / "scene.png"
    cv2.imwrite(str(image_path), img)
    out = tmp_path / "out"
    args = ["run", "--head", "simplepose", "--backbone", "imhn", "--weights", str(official_file), "--input-size", "64",
            "--scales", "1", "--no-overlays", "--option", "thre1=0.01", "--option", "thre2=0.01",
            str(image_path), "--output", str(out)]
    result = CliRunner().invoke(build_cli(), args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    entries = json.loads((out / "results.json").read_text())
    assert entries, "the low thresholds must give people even with recipe weights"

    from bupose.core.inference import load_model

    est = load_model("simplepose", "imhn", official_file, scales=(1.0,), input_size=64, thre1=0.01, thre2=0.01)
    rgb = img[:, :, ::-1].copy()
    with torch.inference_mode():
        heat, limbs = est.pipeline.network_maps(img)
        direct = est.pipeline.group_maps(heat, limbs)
        via_predict = est.predict(rgb)[0]
    np.testing.assert_array_equal(via_predict.keypoints, direct.keypoints)
    assert len(entries) == len(direct)
    for e, kp, s in zip(entries, direct.keypoints, direct.scores, strict=True):
        np.testing.assert_allclose(np.asarray(e["keypoints"]).reshape(17, 3), kp, atol=1e-6)
        assert abs(e["score"] - s) < 1e-9
        v = np.asarray(e["keypoints"]).reshape(17, 3)[:, 2]
        assert set(v.tolist()) <= {0.0, 1.0}


def test_convert_then_run_equivalent(official_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "converted.safetensors"
    result = CliRunner().invoke(
        build_cli(), ["convert", str(official_file), str(out), "--head", "simplepose", "--backbone", "imhn"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    from bupose.core.weights import read_checkpoint

    tensors, meta = read_checkpoint(out)
    assert len(tensors) == 1848 and all(k.startswith("backbone.") for k in tensors)
    assert meta["head"] == "simplepose" and meta["backbone"] == "imhn"


def test_bench_reports_forward_and_decode() -> None:
    bench_stage_results("simplepose", "imhn", {"input_size": "64", "scales": "1"}, batch_sizes=(1,))
