"""Official LOGO-CAP checkpoint files -> bupose: detection from the key layout, wrappers,
strictness, ``bupose convert`` / ``bupose list weights`` / loading through ``load_weights``.
Key layouts from shared/golden/logocap/ manifests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bupose.core.inference import load_weights
from bupose.core.model import build_model
from bupose.core.plugins import get_registry
from bupose.core.weights import (
    CheckpointError,
    CheckpointMismatchError,
    detect_official,
    load_state_dict_strict,
    read_checkpoint,
)
from bupose.logocap.convert import detect_variant, from_official, split_official, to_official, unwrap

sys.path.insert(0, str(Path(__file__).parent))
from _logocap_golden import build_state_dict, manifest


def _meta_sd(name: str) -> dict[str, torch.Tensor]:
    """Stand-in with the manifest's exact keys, shapes and dtypes (values irrelevant to detection)."""
    return {k: torch.zeros(s, dtype=d) for k, s, d, _ in manifest(name)}


@pytest.fixture(scope="module")
def w32() -> dict[str, torch.Tensor]:
    return build_state_dict("manifest_w32_coco.tsv")


def _cli():
    from bupose.core.cli import build_cli

    return build_cli()


@pytest.mark.parametrize(("name", "spec_name", "backbone"), [
    ("manifest_w32_coco.tsv", "logocap_hrnetw32_coco", "hrnet_w32"),
    ("manifest_w48_coco.tsv", "logocap_hrnetw48_coco", "hrnet_w48"),
])
def test_detects_each_variant(name: str, spec_name: str, backbone: str) -> None:
    sd = _meta_sd(name)
    v = detect_variant(sd)
    assert v is not None and (v.backbone, v.layout, v.num_joints) == (backbone, "coco17", 17)
    spec = detect_official(sd, role="model")
    assert spec is not None and spec.name == spec_name
    assert (spec.head, spec.backbone, spec.layout) == ("logocap", backbone, "coco17")
    assert spec.file_names[0] == f"logocap-hrnet-w{backbone[-2:]}-coco.pth.tar"
    assert "cherubicXN/logocap" in spec.source and "no licence file" in spec.source
    converted = from_official(sd)
    assert sum(k.startswith("backbone.") for k in converted) == 1830
    assert sum(k.startswith("head.") for k in converted) == 43
    back = to_official(converted)
    assert list(back) == list(sd)  # official order restored: backbone first, then the head
    bb, head, other = split_official(sd)
    assert len(bb) == 1830 and len(head) == 43 and other == []
    assert "conv1.weight" in bb


def test_wrappers_and_prefixes(w32: dict[str, torch.Tensor]) -> None:
    prefixed = {f"module.{k}": v for k, v in w32.items()}
    for wrapped in (prefixed, {"state_dict": w32}, {"model": prefixed, "epoch": 3}):
        assert unwrap(wrapped).keys() == w32.keys()
        spec = detect_official(wrapped, role="model")
        assert spec is not None and spec.name == "logocap_hrnetw32_coco"
    with pytest.raises(CheckpointError, match="state_dict"):
        unwrap({"epoch": 3, "optimizer": {"lr": 1}})


def test_mismatch_names_keys(w32: dict[str, torch.Tensor]) -> None:
    bad = dict(w32)
    del bad["joints_mlp.4.bias_"]
    bad["joints_mlp.4.weight"] = torch.ones(256)  # an affine AttnBatchNorm2d would have this
    bad["loss_evaluator.dummy"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as err:
        from_official(bad)
    assert err.value.missing == ["joints_mlp.4.bias_"]
    assert err.value.unexpected == ["joints_mlp.4.weight", "loss_evaluator.dummy"]
    assert "joints_mlp.4.bias_" in str(err.value)
    no_kam = {k: v for k, v in w32.items() if not k.startswith("joints_mlp")}
    with pytest.raises(CheckpointError, match="not an official LOGO-CAP model file"):
        from_official(no_kam)
    spec = detect_official(no_kam, role="model")
    assert spec is None or spec.head != "logocap"
    # a missing backbone key is named by the strict load of the model
    model = build_model("logocap", "hrnet_w32")
    nobb = dict(w32)
    del nobb["backbone.stage4.2.fuse_layers.3.0.2.0.weight"]
    converted = from_official(nobb)
    with pytest.raises(CheckpointMismatchError, match=r"stage4\.2\.fuse_layers\.3\.0\.2\.0\.weight"):
        load_state_dict_strict(model, converted, "file")


def test_weights_are_listed() -> None:
    names = get_registry().names("weights")
    assert "logocap_hrnetw32_coco" in names and "logocap_hrnetw48_coco" in names
    res = CliRunner().invoke(_cli(), ["list", "weights"])
    assert res.exit_code == 0, res.output
    assert "logocap_hrnetw32_coco" in res.output and "logocap_hrnetw48_coco" in res.output


def test_convert_command_and_load(tmp_path: Path, w32: dict[str, torch.Tensor]) -> None:
    src = tmp_path / "logocap-hrnet-w32-coco.pth.tar"
    torch.save(w32, src)  # a plain state_dict, as the official file is
    out = tmp_path / "w32.safetensors"
    res = CliRunner().invoke(_cli(), ["convert", str(src), str(out)])
    assert res.exit_code == 0, res.output
    assert "logocap_hrnetw32_coco" in res.output
    tensors, meta = read_checkpoint(out)
    assert (meta["head"], meta["backbone"], meta["layout"]) == ("logocap", "hrnet_w32", "coco17")
    assert to_official(tensors).keys() == w32.keys()
    # both files load strictly into the model and give the same weights
    a = build_model("logocap", "hrnet_w32")
    assert load_weights(a, src) == {"official": "logocap_hrnetw32_coco"}
    b = build_model("logocap", "hrnet_w32")
    load_weights(b, out)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(sa["head.joints_mlp.4.weight_"], w32["joints_mlp.4.weight_"])
    # the W32 file does not load into a W48 model
    c = build_model("logocap", "hrnet_w48")
    with pytest.raises(CheckpointError):
        load_weights(c, src)
