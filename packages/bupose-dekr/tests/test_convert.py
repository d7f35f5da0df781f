"""Official DEKR checkpoint files -> bupose: detection, wrappers, strictness, the ``bupose convert``
command (core) with the DEKR converters. Key layouts from shared/golden/dekr/ manifests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bupose.core.plugins import get_registry
from bupose.core.weights import (
    CheckpointError,
    CheckpointMismatchError,
    detect_official,
    read_checkpoint,
)
from bupose.core.weights import unwrap_checkpoint as unwrap
from bupose.dekr.convert import RESCORE_COCO, detect_variant, from_official, to_official
from bupose.dekr.model import PredictOKSNet

sys.path.insert(0, str(Path(__file__).parent))
from _dekr_golden import build_state_dict, fixture


@pytest.fixture(scope="module")
def w32_coco() -> dict[str, torch.Tensor]:
    return build_state_dict("manifest_w32_coco.tsv")


def _meta_sd(manifest_name: str) -> dict[str, torch.Tensor]:
    """Cheap stand-in with the manifest's exact keys and shapes (values irrelevant to detection)."""
    from _dekr_golden import manifest

    return {k: torch.zeros(s, dtype=d) for k, s, d, _ in manifest(manifest_name)}


@pytest.mark.parametrize(
    ("manifest_name", "spec_name", "backbone", "layout"),
    [
        ("manifest_w32_coco.tsv", "dekr_hrnetw32_coco", "hrnet_w32", "coco17"),
        ("manifest_w48_coco.tsv", "dekr_hrnetw48_coco", "hrnet_w48", "coco17"),
        ("manifest_w32_crowdpose.tsv", "dekr_hrnetw32_crowdpose", "hrnet_w32", "crowdpose14"),
        ("manifest_w48_crowdpose.tsv", "dekr_hrnetw48_crowdpose", "hrnet_w48", "crowdpose14"),
    ],
)
def test_detects_each_model_variant(manifest_name: str, spec_name: str, backbone: str, layout: str) -> None:
    sd = _meta_sd(manifest_name)
    v = detect_variant(sd)
    assert v is not None and (v.backbone, v.layout) == (backbone, layout)
    spec = detect_official(sd, role="model")
    assert spec is not None and spec.name == spec_name
    assert spec.head == "dekr" and spec.backbone == backbone and spec.layout == layout
    assert spec.file_names[0].startswith("pose_dekr_") and "HRNet/DEKR README" in spec.source
    converted = from_official(sd)
    assert all(k.startswith(("backbone.", "head.")) for k in converted)
    assert to_official(converted) == sd


@pytest.mark.parametrize(("variant", "spec_name"), [("coco", "dekr_rescore_coco"), ("crowdpose", "dekr_rescore_crowdpose")])
def test_detects_rescore_files(variant: str, spec_name: str) -> None:
    sd = build_state_dict(f"manifest_rescore_{variant}.tsv")
    spec = detect_official(sd, role="rescore")
    assert spec is not None and spec.name == spec_name and spec.role == "rescore"
    assert detect_official(sd, role="model") is None
    net = spec.load().build(spec.load().convert(sd))
    assert isinstance(net, PredictOKSNet)
    fx = fixture(f"forward_rescore_{variant}.pt")
    with torch.no_grad():
        assert float((net(fx["input"]) - fx["output"]).abs().max()) <= 1e-5


def test_wrappers_and_prefixes(w32_coco: dict[str, torch.Tensor]) -> None:
    prefixed = {f"module.{k}": v for k, v in w32_coco.items()}
    resumable = {"epoch": 3, "model": "hrnet_dekr", "state_dict": prefixed, "best_state_dict": w32_coco, "perf": 0.5}
    for wrapped in (prefixed, {"state_dict": w32_coco}, {"model": w32_coco}, resumable):
        assert unwrap(wrapped).keys() == w32_coco.keys()
        assert detect_official(wrapped, role="model").name == "dekr_hrnetw32_coco"
    with pytest.raises(CheckpointError, match="state_dict"):
        unwrap({"epoch": 3, "optimizer": {"lr": 1}})


def test_mismatch_names_keys(w32_coco: dict[str, torch.Tensor]) -> None:
    bad = dict(w32_coco)
    del bad["offset_final_layer.3.bias"]
    bad["offset_feature_layers.0.0.adapt_conv.bias"] = torch.zeros(15)
    with pytest.raises(CheckpointMismatchError) as err:
        from_official(bad)
    assert err.value.missing == ["offset_final_layer.3.bias"]
    assert err.value.unexpected == ["offset_feature_layers.0.0.adapt_conv.bias"]
    assert "offset_final_layer.3.bias" in str(err.value)
    not_dekr = {k: v for k, v in w32_coco.items() if not k.startswith("transition_heatmap")}
    with pytest.raises(CheckpointError, match="not an official DEKR model file"):
        from_official(not_dekr)
    assert detect_official(not_dekr, role="model") is None or detect_official(not_dekr, role="model").head != "dekr"


def test_weights_are_listed() -> None:
    names = get_registry().names("weights")
    for n in ("dekr_hrnetw32_coco", "dekr_hrnetw48_coco", "dekr_hrnetw32_crowdpose", "dekr_hrnetw48_crowdpose",
              "dekr_rescore_coco", "dekr_rescore_crowdpose"):
        assert n in names
    assert RESCORE_COCO.num_features == 74


def _cli():
    from bupose.core.cli import build_cli

    return build_cli()


def _convert_rescore(tmp_path: Path) -> tuple[dict[str, torch.Tensor], Path, Path]:
    """A synthetic CrowdPose rescoring file under its official name, converted by `bupose convert`."""
    sd = build_state_dict("manifest_rescore_crowdpose.tsv")
    src = tmp_path / "final_rescore_crowd_pose_kpt.pth"
    torch.save(sd, src)
    out = tmp_path / "rescore.safetensors"
    res = CliRunner().invoke(_cli(), ["convert", str(src), str(out)])
    assert res.exit_code == 0, res.output
    return sd, src, out


def test_convert_command_rescore(tmp_path: Path) -> None:
    sd, src, out = _convert_rescore(tmp_path)
    tensors, meta = read_checkpoint(out)
    assert meta["role"] == "rescore" and meta["layout"] == "crowdpose14"
    assert meta["source_file"] == src.name and meta["converted_from"] == "dekr_rescore_crowdpose"
    assert set(tensors) == set(sd) and all(torch.equal(tensors[k], sd[k]) for k in sd)


def test_convert_command_rejects_unknown(tmp_path: Path) -> None:
    src = tmp_path / "random.pth"
    torch.save({"foo.weight": torch.zeros(3)}, src)
    res = CliRunner().invoke(_cli(), ["convert", str(src), str(tmp_path / "o.safetensors")])
    assert res.exit_code != 0
    assert "not a known official key layout" in res.output
    assert not (tmp_path / "o.safetensors").exists()


def test_convert_command_model(tmp_path: Path, w32_coco: dict[str, torch.Tensor]) -> None:
    pytest.importorskip("bupose.hrnet", reason="bupose-hrnet (test extra) provides hrnet_w32")
    from bupose.core.inference import load_weights
    from bupose.core.model import build_model

    src = tmp_path / "pose_dekr_hrnetw32_coco.pth"
    torch.save(w32_coco, src)
    out = tmp_path / "w32.safetensors"
    res = CliRunner().invoke(_cli(), ["convert", str(src), str(out)])
    assert res.exit_code == 0, res.output
    assert "dekr_hrnetw32_coco" in res.output
    tensors, meta = read_checkpoint(out)
    assert (meta["head"], meta["backbone"], meta["layout"]) == ("dekr", "hrnet_w32", "coco17")
    assert meta["source_file"] == src.name and "bupose_version" in meta
    assert to_official(tensors).keys() == w32_coco.keys()
    assert torch.equal(tensors["head.offset_final_layer.16.weight"], w32_coco["offset_final_layer.16.weight"])
    # the bupose file and the official file load into a model identically
    m1 = build_model("dekr", "hrnet_w32", "coco17")
    assert load_weights(m1, out)["head"] == "dekr"
    m2 = build_model("dekr", "hrnet_w32", "coco17")
    assert load_weights(m2, src) == {"official": "dekr_hrnetw32_coco"}
    assert torch.equal(m1.state_dict()["backbone.stage4.2.fuse_layers.0.3.0.weight"],
                       m2.state_dict()["backbone.stage4.2.fuse_layers.0.3.0.weight"])
    # explicit options: a contradicting backbone is refused with a clear message
    res = CliRunner().invoke(_cli(), ["convert", str(src), str(tmp_path / "x.safetensors"), "--backbone", "hrnet_w48"])
    assert res.exit_code != 0 and "--backbone hrnet_w48" in res.output
    res = CliRunner().invoke(_cli(), ["convert", str(src), str(tmp_path / "x.safetensors"), "--layout", "crowdpose14"])
    assert res.exit_code != 0 and "not a known official key layout" in res.output
    assert json.loads(json.dumps(meta))  # metadata is plain JSON


def test_convert_writes_provenance(tmp_path: Path) -> None:
    """`bupose convert` records the model zoo's provenance (licence, source, digest status) and the
    sha256 of the file it converted."""
    import hashlib

    _, src, out = _convert_rescore(tmp_path)
    _, meta = read_checkpoint(out)
    prov = meta["provenance"]
    assert prov["licence"].startswith("MIT") and prov["source_page"] == "https://github.com/HRNet/DEKR"
    assert prov["sha256"] == "unknown" and prov["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert "final_rescore_crowd_pose_kpt.pth" in prov["source"]
