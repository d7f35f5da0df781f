"""CrowdPose: the W48 CrowdPose official-format file (manifest_w48_crowdpose.tsv + recipe, under
``state_dict``) through ``bupose run --layout crowdpose14`` and ``bupose eval`` (CrowdPose E/M/H
protocol) on tiny synthetic CrowdPose scenes, at input 128 to keep the test small."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _centergroup_golden import build_state_dict
from click.testing import CliRunner

from bupose.core.cli import build_cli

pytest.importorskip("bupose.hrnet", reason="needs bupose-hrnet (test extra)")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cgcp") / "centergroup_higherhrnet_w48_crowdpose_640x640.pth"
    torch.save({"state_dict": build_state_dict("manifest_w48_crowdpose.tsv")}, path)
    return path


def test_run_and_eval_crowdpose(ckpt: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "synth"
    res = runner.invoke(build_cli(), ["data", "synth", "--layout", "crowdpose14", "--images", "2", "--size", "96",
                                      "--out", str(data)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    images = sorted((data / "images").iterdir())
    res = runner.invoke(build_cli(), [
        "run", "--head", "centergroup", "--backbone", "higherhrnet_w48", "--layout", "crowdpose14", "--weights", str(ckpt),
        "--flip", "--input-size", "128", "--no-overlays", str(images[0]), "--output", str(out),
    ], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert 3 <= len(results) <= 30
    assert all(len(r["keypoints"]) == 14 * 3 for r in results)
    metrics = tmp_path / "metrics.json"
    res = runner.invoke(build_cli(), [
        "eval", "--head", "centergroup", "--backbone", "higherhrnet_w48", "--layout", "crowdpose14",
        "--weights", str(ckpt), "--data", str(data / "annotations.json"), "--input-size", "128", "--output", str(metrics),
        "--save-results", str(tmp_path / "eval_results.json"),
    ], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = json.loads(metrics.read_text())
    keys = {k.lower() for k in m}
    assert any("e" in k and k.startswith("ap") and k != "ap" for k in keys), m
