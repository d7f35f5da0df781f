"""Inference speed-ups keep DEKR's function: the folded channels_last copy the pipeline runs, the
reference-op notice, and ``bupose bench --head dekr``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bupose.core import ops
from bupose.core.cli import build_cli
from bupose.core.model import PoseModel, build_model
from bupose.dekr.pipeline import DEKRPipeline

pytest.importorskip("bupose.hrnet", reason="these tests need a backbone (bupose-hrnet, test extra)")

INPUT = 64


def _model() -> PoseModel:
    """A small DEKR model with non-trivial BatchNorm statistics and adaptive-conv transforms."""
    torch.manual_seed(0)
    m = build_model("dekr", "hrnet_w18_small")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                mod.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                mod.bias.copy_(torch.randn(n, generator=g) * 0.05)
        head = m.head
        for j in range(head.num_joints):
            for block in head.offset_feature_layers[j]:
                block.transform_matrix_conv.weight.normal_(0, 0.02, generator=g)
                block.translation_conv.weight.normal_(0, 0.05, generator=g)
                block.translation_conv.bias.normal_(0, 1.0, generator=g)
            torch.nn.init.normal_(head.offset_final_layer[j].weight, std=1.0)
        final = head.head_heatmap[1]
        torch.nn.init.normal_(final.weight, std=2.0)
        final.bias.zero_()
        final.bias[-1] = 0.3
    return m.eval()


@pytest.fixture(scope="module")
def model() -> PoseModel:
    return _model()


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for h, w in [(45, 60), (50, 35), (46, 61)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[h // 4 : h // 2, w // 3 : w // 2] = 255
        out.append(img)
    return out


def test_optimised_pipeline_gives_the_same_poses(model: PoseModel) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = DEKRPipeline(model, flip=True, input_size=INPUT)
    plain = DEKRPipeline(model, flip=True, input_size=INPUT, optimize=False)
    got, ref = fast.predict_batch(_images()), plain.predict_batch(_images())
    assert sum(len(p) for p in ref) > 5, "the test model must detect people"
    for a, b in zip(got, ref, strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
    net = fast.network_module()
    assert net is not model and plain.network_module() is model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.backbone.modules())
    for k, v in model.state_dict().items():  # the model given to the pipeline is not changed
        assert torch.equal(v, before[k])


def test_pipeline_follows_new_weights(model: PoseModel) -> None:
    m = _model()
    pipe = DEKRPipeline(m, flip=False, input_size=INPUT)
    first = pipe.predict_batch(_images()[:1])[0]
    other = build_model("dekr", "hrnet_w18_small").eval()
    with torch.no_grad():
        for p in other.parameters():
            p.normal_(0, 0.05)
        other.head.head_heatmap[1].bias[-1] = 0.4
    m.load_state_dict(other.state_dict())
    again = pipe.predict_batch(_images()[:1])[0]
    ref = DEKRPipeline(other, flip=False, input_size=INPUT, optimize=False).predict_batch(_images()[:1])[0]
    assert len(again) == len(ref)
    np.testing.assert_allclose(again.keypoints, ref.keypoints, rtol=0, atol=1e-3)
    assert len(first) != len(again) or not np.allclose(first.keypoints, again.keypoints)


def test_pipeline_says_once_when_deform_conv_is_the_reference(
    model: PoseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUPOSE_OPS", raising=False)
    monkeypatch.setattr(ops, "selected_implementation", lambda name, device=None: "reference")
    ops.clear_op_cache()
    try:
        with pytest.warns(RuntimeWarning, match="deform_conv2d on cpu: using the slow pure-PyTorch reference"):
            DEKRPipeline(model, input_size=INPUT)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            DEKRPipeline(model, input_size=INPUT)  # once per process
    finally:
        ops.clear_op_cache()


def test_bench_command_prints_variants_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench", "--head", "dekr", "--backbone", "hrnet_w18_small", "--batch-sizes", "1,2", "--images", "2",
        "--image-size", "40x56", "--rounds", "1", "--warmup", "0", "--compare-plain", "--threads", "1",
        "--option", "input_size=64", "--option", "flip=false", "--output", str(out),
    ]  # fmt: skip
    res = CliRunner().invoke(build_cli(), args)
    assert res.exit_code == 0, res.output
    rows = [line.split()[:3] for line in res.output.splitlines() if line.startswith("fp32 ")]
    assert [r[:2] for r in rows] == [["fp32", "b1"], ["fp32", "plain"], ["fp32", "b2"], ["fp32", "plain"]]
    assert "1.00x" in res.output and "img/s" in res.output and "1 threads" in res.output
    data = json.loads(out.read_text())
    names = [r["name"] for r in data["results"]]
    assert names == ["fp32 b1", "fp32 plain b1", "fp32 b2", "fp32 plain b2"]
    for r in data["results"]:
        assert set(r["stages_wall"]) == {"forward", "decode"} and r["wall"] > 0 and r["cpu"] > 0
        assert r["stages_wall"]["forward"] <= r["wall"] * 1.01


def test_bench_command_errors_are_one_line() -> None:
    runner = CliRunner()
    res = runner.invoke(build_cli(), ["bench", "--head", "dekr"])
    assert res.exit_code != 0 and "give both --head and --backbone" in res.output
    res = runner.invoke(build_cli(), ["bench", "--head", "dekr", "--backbone", "hrnet_w18_small", "--batch-sizes", "0"])
    assert res.exit_code != 0 and "--batch-sizes" in res.output
    res = runner.invoke(build_cli(), ["bench", "--head", "dekr", "--backbone", "hrnet_w18_small", "--image-size", "9x9"])
    assert res.exit_code != 0 and "--image-size" in res.output
    res = runner.invoke(
        build_cli(), ["bench", "--head", "dekr", "--backbone", "hrnet_w18_small", "--option", "no_such=1"]
    )
    assert res.exit_code != 0 and "no_such" in res.output and "Traceback" not in res.output
