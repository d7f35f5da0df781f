"""ONNX export (``bupose export``) run in onnxruntime gives the torch path's poses.

DEKR exports its adaptive convolution as ONNX ``DeformConv`` (opset 19); LOGO-CAP's KAM network (run
during decoding) is a second graph in the same file; SimplePose (a small IMHN: 1 stack, depth 2) and the
example head are plain networks. The poses through the head's own pipeline
must agree: same count and order, keypoints within 1e-2 px, scores within 1e-4 — through the Python
API and through ``bupose run --backend onnxruntime --model FILE.onnx``.
"""

from __future__ import annotations

import json
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
from bupose.core.poses import Poses
from bupose.core.specs import HeadSpec, import_object
from bupose.core.vis import save_image
from bupose.core.weights import save_safetensors


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


_SMALL_IMHN = {"nstack": 1, "depth": 2, "stem_width": 16, "increase": 16, "feat_channels": 32, "se_hidden": 4}


def _build(head: str, backbone: str, backbone_kwargs: dict | None = None) -> torch.nn.Module:
    """A randomly initialised model whose outputs produce people (SimplePose: raised limb/joint maps, so
    its 0.45 mean-score rule keeps some)."""
    model = build_model(head, backbone, backbone_kwargs=backbone_kwargs).eval()
    _lively_weights(model, seed=3)
    if head == "simplepose":
        with torch.no_grad():
            for name, t in model.state_dict().items():
                if ".outs." in name and name.endswith("bias"):
                    t.add_(0.5)
    return model


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(96, 128), (128, 96), (100, 100)]
    return [rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8) for i in range(n)]


def _torch_estimator(model: torch.nn.Module, **options: object) -> Estimator:
    spec = get_registry().get("heads", model.head_name)
    assert isinstance(spec, HeadSpec) and spec.pipeline
    return Estimator(model, import_object(spec.pipeline)(model, **options))


def _assert_same_poses(want: list, got: list) -> None:
    assert sum(len(p.scores) for p in want) > 0, "the test model must produce poses"
    for w, g in zip(want, got, strict=True):
        assert g.keypoints.shape == w.keypoints.shape
        np.testing.assert_allclose(g.keypoints[..., :2], w.keypoints[..., :2], atol=1e-2, rtol=0)
        np.testing.assert_allclose(g.keypoints[..., 2], w.keypoints[..., 2], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(g.scores, w.scores, atol=1e-4, rtol=1e-4)


CASES = [
    ("dekr", "hrnet_w18_small", None, {"input_size": 128, "flip": True, "keypoint_threshold": -1.0}, (128, 192)),
    ("simplepose", "imhn", _SMALL_IMHN, {"input_size": 64, "scales": (1.0,), "flip": True}, (64, 64)),
    ("logocap", "hrnet_w18_small", None, {"input_size": 128, "flip": True}, (128, 128)),
    ("example", "example_convnet", None, {}, (64, 64)),
]


@pytest.mark.parametrize(("head", "backbone", "backbone_kwargs", "options", "input_hw"), CASES,
                         ids=[c[0] for c in CASES])
def test_onnxruntime_poses_equal_torch(
    head: str, backbone: str, backbone_kwargs: dict | None, options: dict, input_hw: tuple[int, int],
    tmp_path: Path,
) -> None:
    if head not in get_registry().names("heads"):
        pytest.skip(f"head {head!r} is not installed")
    model = _build(head, backbone, backbone_kwargs)
    path = tmp_path / f"{head}.onnx"
    check = export_onnx(model, path, input_hw=input_hw)
    assert check is not None and check.worst <= 1e-3 * max(1.0, max(check.max_abs_value.values()))
    meta = read_onnx_metadata(path)
    assert (meta["head"], meta["backbone"], meta["layout"]) == (head, backbone, "coco17")

    images = _images(3, seed=1)
    want = _torch_estimator(model, **options).predict(images)
    got = load_onnx_estimator(path, **options).predict(images)
    _assert_same_poses(want, got)


def _coco_by_image(path: Path) -> dict:
    out: dict = {}
    for e in json.loads(path.read_text()):
        out.setdefault(e["image_id"], []).append(e)
    return out


@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=["dekr", "example"])
def test_run_backend_onnxruntime_equals_torch(case: tuple, tmp_path: Path) -> None:
    """`bupose run --backend onnxruntime --model F.onnx` writes the poses `bupose run --weights` writes.

    (SimplePose is compared through the API above; with random weights its limb assembly meets exact
    ties, and on these images a 1e-7 difference between the two runtimes flipped one joint of 60 people.)"""
    head, backbone, backbone_kwargs, options, input_hw = case
    if head not in get_registry().names("heads"):
        pytest.skip(f"head {head!r} is not installed")
    model = _build(head, backbone, backbone_kwargs)
    weights = tmp_path / "w.safetensors"
    save_safetensors(weights, model.state_dict(), model.metadata())
    onnx_path = tmp_path / "m.onnx"
    export_onnx(model, onnx_path, input_hw=input_hw)
    images = tmp_path / "images"
    images.mkdir()
    for i, img in enumerate(_images(2, seed=4)):
        save_image(images / f"im{i}.png", img)
    opts = [x for k, v in options.items()
            for x in ("--option", f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}")]
    runner = CliRunner()
    res = runner.invoke(build_cli(), ["run", "--head", head, "--backbone", backbone, "--weights", str(weights),
                                      "--output", str(tmp_path / "torch"), "--no-overlays", *opts, str(images)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(build_cli(), ["run", "--backend", "onnxruntime", "--model", str(onnx_path),
                                      "--output", str(tmp_path / "ort"), "--no-overlays", *opts, str(images)])
    assert res.exit_code == 0, res.output
    want, got = _coco_by_image(tmp_path / "torch" / "results.json"), _coco_by_image(tmp_path / "ort" / "results.json")
    assert set(want) == set(got) and sum(len(v) for v in want.values()) > 0
    layout = model.layout.name
    j = model.layout.num_keypoints
    _assert_same_poses([Poses.from_coco(want[k], layout, j) for k in sorted(want)],
                       [Poses.from_coco(got[k], layout, j) for k in sorted(want)])


def test_run_backend_onnxruntime_errors(tmp_path: Path) -> None:
    model = _build("example", "example_convnet")
    onnx_path = tmp_path / "ex.onnx"
    export_onnx(model, onnx_path, input_hw=(64, 64))
    img = tmp_path / "a.png"
    save_image(img, _images(1, seed=0)[0])
    runner = CliRunner()
    base = ["run", "--output", str(tmp_path / "o"), "--no-overlays"]
    res = runner.invoke(build_cli(), [*base, "--backend", "onnxruntime", str(img)])
    assert res.exit_code != 0 and "needs --model FILE.onnx" in res.output
    res = runner.invoke(build_cli(), [*base, "--model", str(onnx_path), str(img)])
    assert res.exit_code != 0 and "only with --backend onnxruntime" in res.output
    res = runner.invoke(build_cli(), [*base, "--backend", "onnxruntime", "--model", str(onnx_path), "--head", "dekr",
                                      str(img)])
    assert res.exit_code != 0 and "was exported for head 'example'" in res.output
    res = runner.invoke(build_cli(), [*base, "--backend", "onnxruntime", "--model", str(onnx_path), str(img)])
    assert res.exit_code == 0, res.output
    from bupose.core.export import OnnxNetwork

    with pytest.raises(ExportError, match="no exported part 'kam'"):
        OnnxNetwork(onnx_path).part("kam")


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


def test_onnx_providers_follow_the_device() -> None:
    from bupose.core.export import onnx_providers

    cpu_only = ["CPUExecutionProvider"]
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cpu", both) == ["CPUExecutionProvider"]
    assert onnx_providers("auto", cpu_only) == ["CPUExecutionProvider"]
    assert onnx_providers("auto", both)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert onnx_providers("cuda:1", both)[0] == ("CUDAExecutionProvider", {"device_id": 1})
    with pytest.raises(ExportError, match="no CUDAExecutionProvider"):
        onnx_providers("cuda", cpu_only)
    with pytest.raises(ExportError, match="expected auto, cpu, cuda"):
        onnx_providers("tpu", both)


def test_logocap_kam_runs_in_onnxruntime(tmp_path: Path) -> None:
    """LOGO-CAP's decoding-time KAM network is exported as its own graph and put back in its place."""
    if "logocap" not in get_registry().names("heads"):
        pytest.skip("bupose-logocap is not installed")
    from bupose.core.export import OnnxPart

    model = _build("logocap", "hrnet_w18_small")
    path = tmp_path / "lc.onnx"
    check = export_onnx(model, path, input_hw=(128, 128))
    assert check is not None and "joints_mlp.output" in check.max_abs_error
    assert read_onnx_metadata(path)["parts"] == ["joints_mlp"]
    est = load_onnx_estimator(path)
    assert isinstance(est.model.head.joints_mlp, OnnxPart)
    x = torch.randn(3, model.head.num_joints * model.head.embedding_dim, 11, 11)
    with torch.no_grad():
        np.testing.assert_allclose(est.model.head.kam(x, clamp=False).numpy(), model.head.kam(x, clamp=False).numpy(),
                                   atol=1e-4, rtol=1e-4)
