"""The whole ecosystem installed together: discovery, composition, failure isolation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bupose.core import build_model, get_registry
from bupose.core.testing import HeadContract


def bupose(*args: str, env_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = str(env_path)
    return subprocess.run([sys.executable, "-m", "bupose.core", *args], capture_output=True, text=True, env=env, timeout=300)


def test_plugins_json_lists_every_distribution() -> None:
    proc = bupose("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    desc = json.loads(proc.stdout)
    dists = {d["distribution"]: d for d in desc["distributions"]}
    for name in ("bupose-core", "bupose-hrnet", "bupose-dekr", "bupose-example-head"):
        assert name in dists, f"{name} not discovered"
        assert dists[name]["version"]
    example = dists["bupose-example-head"]["plugins"][0]["components"]
    assert example["heads"] == ["example"]
    assert example["backbones"] == ["example_convnet"]
    assert "decoders" not in example  # the codec owns decoding; there is no decoders registry
    groupers = dists["bupose-core"]["plugins"]
    assert any(p["components"].get("groupers") == ["single_person"] for p in groupers)
    assert desc["errors"] == []


@pytest.mark.parametrize("backbone", ["hrnet_w18_small", "example_convnet"])
def test_example_head_on_registered_backbones(backbone: str) -> None:
    model = build_model(head="example", backbone=backbone).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out["heatmap"].shape == (1, 17, 16, 16)
    assert model.head.input_shapes == model.backbone.output_shape()


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "swin_t"])
def test_example_head_on_resnet_and_swin(backbone: str) -> None:
    model = build_model(head="example", backbone=backbone).eval()
    finest = min(s.stride for s in model.backbone.output_shape().values())
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert out["heatmap"].shape == (1, 17, 64 // finest, 96 // finest)
    assert torch.isfinite(out["heatmap"]).all()
    assert model.head.input_shapes == model.backbone.output_shape()
    assert get_registry().get("backbones", backbone).distribution in ("bupose-resnet", "bupose-swin")


class TestExampleHeadOnHRNet(HeadContract):
    head_name = "example"
    backbone_name = "hrnet_w18_small"


def test_broken_plugins_do_not_break_the_others(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "broken_bupose_plugin.py").parent.mkdir(parents=True)
    (site / "broken_bupose_plugin.py").write_text("raise RuntimeError('broken at import')\n")
    (site / "hookfail_bupose_plugin.py").write_text(
        textwrap.dedent(
            """
            from bupose.core import hookimpl

            @hookimpl
            def bupose_register_backbones(register):
                raise KeyError('hook failed')
            """
        )
    )
    for dist, module in (("broken-plugin", "broken_bupose_plugin"), ("hookfail-plugin", "hookfail_bupose_plugin")):
        info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[bupose]\n{dist} = {module}\n")
    proc = bupose("plugins", env_path=site)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR during import: RuntimeError: broken at import" in proc.stdout
    assert "ERROR during bupose_register_backbones: KeyError" in proc.stdout
    listed = bupose("list", "backbones", env_path=site)
    assert listed.returncode == 0 and "hrnet_w32" in listed.stdout and "example_convnet" in listed.stdout
    heads = bupose("list", "heads", env_path=site)
    assert "dekr" in heads.stdout and "example" in heads.stdout


def test_registry_provenance_for_first_party_packages() -> None:
    reg = get_registry()
    assert reg.get("backbones", "hrnet_w32").distribution == "bupose-hrnet"
    assert reg.get("heads", "dekr").distribution == "bupose-dekr"
    assert reg.get("layouts", "coco17").distribution == "bupose-core"
