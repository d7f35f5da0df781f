"""ONNX export (``bupose export``) run in onnxruntime gives the torch path's poses.

DEKR exports its adaptive convolution as ONNX ``DeformConv`` (opset 19); the example head is a plain
network. The poses through the head's own pipeline must agree: same count and order, keypoints within
1e-2 px, scores within 1e-4.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from bupose.core.cli import build_cli
from bupose.core.export import ExportError, export_onnx, load_onnx_estimator, read_onnx_metadata
from bupose.core.inference import Estimator
from bupose.core.model import build_model
from bupose.core.plugins import get_registry
from bupose.core.specs import HeadSpec, import_object


def _lively_weights(model: torch.nn.Module, seed: int) -> None:
    """Deterministic weights with fan-in scaling, so a randomly built model produces peaks and poses."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.75 + 0.5 * torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean"):
                t.copy_(0.05 * torch.randn(t.shape, generator=g))
            elif t.dim() >= 2:
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(max(1, t[0].numel())))
            elif name.endswith("weight"):
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(0.05 * torch.randn(t.shape, generator=g))


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(96, 128), (128, 96), (100, 100)]
    return [rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8) for i in range(n)]


def _torch_estimator(model: torch.nn.Module, **options: object) -> Estimator:
    spec = get_registry().get("heads", model.head_name)
    assert isinstance(spec, HeadSpec) and spec.pipeline
    return Estimator(model, import_object(spec.pipeline)(model, **options))


@pytest.mark.parametrize(
    ("head", "backbone", "options", "input_hw"),
    [
        ("dekr", "hrnet_w18_small", {"input_size": 128, "flip": True, "keypoint_threshold": -1.0}, (128, 192)),
        ("example", "example_convnet", {}, (64, 64)),
    ],
    ids=["dekr", "example"],
)
def test_onnxruntime_poses_equal_torch(
    head: str, backbone: str, options: dict, input_hw: tuple[int, int], tmp_path: Path
) -> None:
    model = build_model(head, backbone).eval()
    _lively_weights(model, seed=3)
    path = tmp_path / f"{head}.onnx"
    check = export_onnx(model, path, input_hw=input_hw)
    assert check is not None and check.worst <= 1e-3 * max(1.0, max(check.max_abs_value.values()))
    meta = read_onnx_metadata(path)
    assert (meta["head"], meta["backbone"], meta["layout"]) == (head, backbone, "coco17")

    images = _images(3, seed=1)
    want = _torch_estimator(model, **options).predict(images)
    got = load_onnx_estimator(path, **options).predict(images)
    assert sum(len(p.scores) for p in want) > 0, "the test model must produce poses"
    for w, g in zip(want, got, strict=True):
        assert g.keypoints.shape == w.keypoints.shape
        np.testing.assert_allclose(g.keypoints[..., :2], w.keypoints[..., :2], atol=1e-2, rtol=0)
        np.testing.assert_allclose(g.keypoints[..., 2], w.keypoints[..., 2], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(g.scores, w.scores, atol=1e-4, rtol=1e-4)


def test_export_command_writes_a_checked_file(tmp_path: Path) -> None:
    out = tmp_path / "ex.onnx"
    res = CliRunner().invoke(
        build_cli(),
        ["export", "--head", "example", "--backbone", "example_convnet", "--input-size", "64", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "onnxruntime matches torch" in res.output and out.is_file()
    assert read_onnx_metadata(out)["fields"] == ["heatmap"]


def test_export_errors_are_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        build_cli(), ["export", "--head", "example", "--backbone", "example_convnet", "--input-size", "0x3",
                      str(tmp_path / "x.onnx")],
    )
    assert res.exit_code != 0 and "--input-size '0x3'" in res.output
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ExportError, match="not a readable ONNX file"):
        read_onnx_metadata(tmp_path / "junk.onnx")
    model = build_model("example", "example_convnet")
    with pytest.raises(ExportError, match="opset >= 19"):
        export_onnx(model, tmp_path / "y.onnx", input_hw=(64, 64), opset=17)
    assert not (tmp_path / "y.onnx").exists()
