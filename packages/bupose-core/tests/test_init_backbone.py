"""Backbone-only initialisation (``load_backbone_weights``, the ``init_backbone`` training setting)
and ``bupose train --config FILE`` with the required settings given as flags."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_engine_build import _cfg, _write_dataset
from test_engine_build import registry as registry
from test_engine_helpers import make_model

from bupose.core.engine.build import check_config
from bupose.core.engine.config import ConfigError
from bupose.core.inference import load_backbone_weights
from bupose.core.plugins import Registry, get_registry
from bupose.core.specs import WeightsSpec
from bupose.core.weights import CheckpointError, CheckpointMismatchError, save_safetensors


def _models() -> tuple[Any, Any]:
    torch.manual_seed(0)
    src = make_model()
    torch.manual_seed(1)
    dst = make_model()
    return src, dst


def _same(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bupose_checkpoint_of_another_head_sets_only_the_backbone(tmp_path: Path) -> None:
    src, dst = _models()
    head_before = {k: v.clone() for k, v in dst.head.state_dict().items()}
    path = save_safetensors(tmp_path / "other.safetensors", src.state_dict(), {**src.metadata(), "head": "other"})
    what = load_backbone_weights(dst, path)
    assert "bupose checkpoint" in what and "other" in what
    assert _same(dst.backbone.state_dict(), src.backbone.state_dict())
    assert _same(dst.head.state_dict(), head_before)
    assert not torch.equal(dst.head.conv.weight, src.head.conv.weight)


def test_bupose_checkpoint_of_another_backbone_is_refused(tmp_path: Path) -> None:
    src, dst = _models()
    path = save_safetensors(tmp_path / "x.safetensors", src.state_dict(), {**src.metadata(), "backbone": "big"})
    with pytest.raises(CheckpointError, match=r"checkpoint is for backbone 'big', but the model uses 'tiny'"):
        load_backbone_weights(dst, path)


def test_plain_state_dict_and_strictness(tmp_path: Path) -> None:
    src, dst = _models()
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    assert load_backbone_weights(dst, tmp_path / "plain.pt") == "state_dict backbone.* entries"
    assert _same(dst.backbone.state_dict(), src.backbone.state_dict())
    bad = dict(src.state_dict())
    bad["backbone.body.9.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match=r"body\.9\.weight"):
        load_backbone_weights(dst, tmp_path / "bad.pt")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match=r"no backbone weights recognised"):
        load_backbone_weights(dst, tmp_path / "unknown.pt")


class _Converter:
    """A fake official format: ``net.<key>`` (backbone role) or ``trunk.<key>`` + ``top.*`` (model role)."""

    def __init__(self, prefix: str, model: bool) -> None:
        self.prefix, self.model = prefix, model

    def detect(self, sd: Mapping[str, Any]) -> bool:
        return any(k.startswith(self.prefix) for k in sd)

    def convert(self, sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        bare = {k[len(self.prefix):]: v for k, v in sd.items() if k.startswith(self.prefix)}
        if not self.model:
            return bare
        return {**{f"backbone.{k}": v for k, v in bare.items()}, "head.whatever": torch.zeros(3)}


BACKBONE_CONVERTER = _Converter("net.", model=False)
MODEL_CONVERTER = _Converter("trunk.", model=True)


def _with_weights(base: Registry) -> Registry:
    for spec in (
        WeightsSpec(name="fake_backbone", factory="test_init_backbone:BACKBONE_CONVERTER", summary="fake", file_names=("fake.pth",),
                    backbone="tiny", role="backbone"),
        WeightsSpec(name="fake_model", factory="test_init_backbone:MODEL_CONVERTER", summary="fake", file_names=("fake.pth",),
                    head="somehead", backbone="tiny", layout="coco17", role="model"),
    ):
        base.add("weights", spec)
    return base


def test_official_backbone_and_model_files(tmp_path: Path, registry: Registry) -> None:
    reg = _with_weights(registry)
    src, dst = _models()
    bb = src.backbone.state_dict()
    torch.save({f"net.{k}": v for k, v in bb.items()}, tmp_path / "backbone.pth")
    assert load_backbone_weights(dst, tmp_path / "backbone.pth", registry=reg) == "official backbone fake_backbone"
    assert _same(dst.backbone.state_dict(), bb)
    _, dst = _models()
    torch.save({**{f"trunk.{k}": v for k, v in bb.items()}, "top.x": torch.ones(2)}, tmp_path / "model.pth")
    what = load_backbone_weights(dst, tmp_path / "model.pth", registry=reg)
    assert what == "backbone of official model fake_model"
    assert _same(dst.backbone.state_dict(), bb)


def test_init_backbone_setting_is_checked(tmp_path: Path, registry: Registry) -> None:
    data = _write_dataset(tmp_path / "d")
    with pytest.raises(ConfigError, match=r"config: init_backbone .*nope\.pth not found"):
        check_config(_cfg(tmp_path, data, f"init_backbone={tmp_path / 'nope.pth'}"), registry=registry)
    f = tmp_path / "w.pt"
    torch.save({}, f)
    with pytest.raises(ConfigError, match=r"init_weights \(whole model\) or init_backbone \(backbone only\), not both"):
        check_config(_cfg(tmp_path, data, f"init_backbone={f}", f"init_weights={f}"), registry=registry)


def test_config_file_without_the_required_settings_takes_them_from_the_flags(tmp_path: Path) -> None:
    from bupose.core.cli.train import _config_from_cli

    f = tmp_path / "c.json"
    f.write_text(json.dumps({"input_size": 96, "batch_size": 2, "head_kwargs": {"a": 1}}))
    flags = {"head": "h", "backbone": "b", "data": "d", "out": "o", "device": None, "layout": None}
    cfg = _config_from_cli(str(f), flags, ("batch_size=4",), False)
    assert (cfg.head, cfg.backbone, cfg.data, cfg.out) == ("h", "b", "d", "o")
    assert (cfg.input_size, cfg.batch_size, cfg.head_kwargs) == (96, 4, {"a": 1})  # --set beats the file
    from bupose.core.cli import BuposeError

    with pytest.raises(BuposeError, match=r"'head' is required"):
        _config_from_cli(str(f), {**flags, "head": None}, (), False)


def test_installed_registry_untouched() -> None:
    assert "fake_backbone" not in get_registry().names("weights")
