"""DEKR's declared test options: official defaults (the decoder's, per layout), the pipeline built
from them (codec decoder, size multiple with the backbone's divisibility), CLI validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.model import PoseModel, build_model
from bupose.core.options import OptionError, build_options, describe
from bupose.core.plugins import get_registry
from bupose.core.weights import save_safetensors
from bupose.dekr.codec import DEKRCodec
from bupose.dekr.decode import DEFAULT_OPTIONS, LAYOUT_DEFAULTS
from bupose.dekr.options import DECODE_OPTION_NAMES, DEKROptions
from bupose.dekr.pipeline import DEKRPipeline

pytest.importorskip("bupose.hrnet", reason="needs a backbone (bupose-hrnet, test extra)")


@pytest.fixture(scope="module")
def model() -> PoseModel:
    torch.manual_seed(0)
    return build_model("dekr", "hrnet_w18_small").eval()


def test_declared_defaults_are_the_decoders_official_values() -> None:
    opts = DEKROptions()
    assert set(DECODE_OPTION_NAMES) == set(DEFAULT_OPTIONS) - {"stride"}
    for name in DECODE_OPTION_NAMES:
        if name in DEKROptions.layout_defaults["coco17"]:
            assert getattr(opts, name) is None
        else:
            assert getattr(opts, name) == DEFAULT_OPTIONS[name], name
    assert DEKROptions.layout_defaults == LAYOUT_DEFAULTS
    assert (opts.flip, opts.scales, opts.size_multiple, opts.batch_mode) == (True, (1.0,), 64, "group")
    assert all(r.help for r in describe(DEKROptions))


def test_registered_head_names_the_options_and_no_grouper() -> None:
    spec = get_registry().get("heads", "dekr")
    assert spec.load_options() is DEKROptions is DEKRPipeline.options_class
    assert spec.grouper is None


def test_per_layout_defaults_still_apply_and_explicit_values_win() -> None:
    crowd = build_model("dekr", "hrnet_w18_small", "crowdpose14").eval()
    pipe = DEKRPipeline(crowd, input_size=64)
    assert (pipe.decoder.nms_num_thre, pipe.decoder.decrease) == (7, 0.8)
    pipe = DEKRPipeline(crowd, DEKROptions(nms_num_thre=3), input_size=64)
    assert (pipe.decoder.nms_num_thre, pipe.decoder.decrease, pipe.input_size) == (3, 0.8, 64)


def test_pipeline_decoder_comes_from_the_codec(model: PoseModel) -> None:
    pipe = DEKRPipeline(model, DEKROptions(match_hmp=True, input_size=64))
    assert isinstance(pipe.codec, DEKRCodec) and pipe.decoder is pipe.codec.decoder
    assert pipe.decoder.match_hmp and pipe.decoder.stride == 4.0
    assert pipe.options == DEKROptions(match_hmp=True, input_size=64)
    with pytest.raises(OptionError, match="options must be a DEKROptions"):
        DEKRPipeline(model, {"flip": False})


def test_size_multiple_combines_with_backbone_divisibility(model: PoseModel) -> None:
    assert model.backbone.size_divisibility == 32
    assert DEKRPipeline(model, input_size=64).size_multiple == 64  # lcm(64, 32): the official rule
    assert DEKRPipeline(model, input_size=64, size_multiple=16).size_multiple == 32
    model.backbone.size_divisibility = 128
    try:
        pipe = DEKRPipeline(model, input_size=64)
        assert pipe.size_multiple == 128
        img = np.zeros((50, 90, 3), np.uint8)
        (out,) = pipe.scale_outputs([img])[0:1][0]
        w, h = out.meta.size_wh
        assert w % 128 == 0 and h % 128 == 0
    finally:
        model.backbone.size_divisibility = 32


def test_python_keyword_errors_are_clear(model: PoseModel) -> None:
    with pytest.raises(TypeError, match="did you mean 'nms_thre'"):
        DEKRPipeline(model, nms_threshold=0.1)
    with pytest.raises(ValueError, match="match_hmp=yes please: expected true or false"):
        DEKRPipeline(model, match_hmp="yes please")
    with pytest.raises(OptionError, match=r"rescore_weights=/no/file\.pth: expected the path of an existing file"):
        build_options(DEKROptions, {"rescore_weights": "/no/file.pth"})


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, model: PoseModel) -> Path:
    path = tmp_path_factory.mktemp("w") / "dekr.safetensors"
    save_safetensors(path, model.state_dict(), model.metadata())
    return path


def _run(weights: Path, tmp_path: Path, *extra: str) -> object:
    img = tmp_path / "a.png"
    if not img.exists():
        import cv2

        cv2.imwrite(str(img), np.full((40, 56, 3), 120, np.uint8))
    return CliRunner().invoke(build_cli(), [
        "run", "--head", "dekr", "--backbone", "hrnet_w18_small", "--weights", str(weights), "--no-overlays",
        "--output", str(tmp_path / "out"), *extra, str(img),
    ])  # fmt: skip


def test_cli_option_errors(weights: Path, tmp_path: Path) -> None:
    res = _run(weights, tmp_path, "--option", "nms_threshold=0.1")
    assert res.exit_code != 0
    assert "--option nms_threshold: not accepted by head 'dekr'" in res.output and "did you mean 'nms_thre'" in res.output
    res = _run(weights, tmp_path, "--option", "match_hmp=maybe")
    assert res.exit_code != 0 and "--option match_hmp=maybe: expected true or false (bool)" in res.output
    res = _run(weights, tmp_path, "--scales", "0.5,2")
    assert res.exit_code != 0 and "scales must contain 1.0" in res.output
    res = _run(weights, tmp_path, "--rescore-weights", str(tmp_path / "none.pth"))
    assert res.exit_code != 0 and "rescore_weights=" in res.output and "existing file" in res.output
    res = _run(weights, tmp_path, "--flip", "--option", "flip=false")
    assert res.exit_code != 0 and "both set 'flip'" in res.output
    res = _run(weights, tmp_path, "--grouper", "single_person")
    assert res.exit_code != 0 and "head 'dekr' takes no grouper" in res.output


def test_cli_options_reach_the_pipeline(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[DEKROptions] = []
    original = DEKRPipeline.__init__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        seen.append(self.options)

    monkeypatch.setattr(DEKRPipeline, "__init__", spy)
    res = _run(weights, tmp_path, "--no-flip", "--input-size", "64", "--option", "nms_thre=0.15",
               "--option=max_num_people=5", "--scales", "1,0.5")  # fmt: skip
    assert res.exit_code == 0, res.output
    (opts,) = seen
    assert (opts.flip, opts.input_size, opts.nms_thre, opts.max_num_people, opts.scales) == (
        False, 64, 0.15, 5, (1.0, 0.5)
    )


def test_help_for_dekr_imports_no_torch() -> None:
    code = (
        "import sys\nfrom bupose.core.cli import main\n"
        "try:\n    main(['run', '--head', 'dekr', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "match_hmp (bool, default false)" in proc.stdout
    assert "nms_num_thre (int | None, default 8 (coco17), 7 (crowdpose14))" in proc.stdout
    assert "grouping: forms people itself (no --grouper)" in proc.stdout
