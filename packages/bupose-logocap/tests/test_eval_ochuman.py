"""``bupose eval`` model mode with the logocap head under the OCHuman protocol (``--layout
ochuman``: COCO-format files, COCO keypoint protocol), as LOGO-CAP reports cross-dataset results,
on two tiny synthetic scenes from ``bupose data synth``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.model import build_model
from bupose.core.weights import save_safetensors

pytest.importorskip("bupose.hrnet", reason="needs bupose-hrnet (test extra)")


def test_eval_model_mode_ochuman(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "synth"
    res = runner.invoke(build_cli(), ["data", "synth", "--images", "2", "--size", "64", "--out", str(data)])
    assert res.exit_code == 0, res.output
    torch.manual_seed(0)
    model = build_model("logocap", "hrnet_w18_small")
    weights = tmp_path / "m.safetensors"
    save_safetensors(weights, model.state_dict(), model.metadata())
    metrics, results = tmp_path / "metrics.json", tmp_path / "results.json"
    res = runner.invoke(build_cli(), [
        "eval", "--head", "logocap", "--backbone", "hrnet_w18_small", "--weights", str(weights),
        "--data", str(data), "--layout", "ochuman", "--input-size", "64", "--output", str(metrics),
        "--save-results", str(results),
    ], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = json.loads(metrics.read_text())
    assert any(k.lower().startswith("ap") for k in m), m
    assert isinstance(json.loads(results.read_text()), list)
