"""Head-declared training pieces: parameter groups and learning rates, frozen parameters, frozen
batch norm, the config's param_groups, and a head's own augmentation."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bupose.core.engine.config import ConfigError, load_config
from bupose.core.engine.params import parse_rules, plan_param_groups, set_train_mode
from bupose.core.engine.trainer import Trainer
from bupose.core.model import Backbone, ParamGroupRule, PoseModel
from bupose.core.specs import FeatureShape
from bupose.core.weights import read_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
import test_engine_helpers as tiny


class BNBackbone(Backbone):
    """conv -> BN -> ReLU -> conv (stride 4 overall)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.width = width
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.body = nn.Conv2d(width, width, 3, stride=2, padding=1)

    def output_shape(self) -> dict[str, FeatureShape]:
        return {"s4": FeatureShape(self.width, 4)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"s4": torch.relu(self.body(torch.relu(self.bn(self.stem(x)))))}


class RuledHead(tiny.TinyHead):
    """TinyHead declaring: stem frozen, the rest of the backbone at lr x0.1 with frozen BN."""

    def param_group_rules(self) -> list[ParamGroupRule]:
        return [ParamGroupRule("backbone.stem.", frozen=True),
                ParamGroupRule("backbone.", lr_scale=0.1, weight_decay=0.5, freeze_bn=True)]


def ruled_model() -> PoseModel:
    bb = BNBackbone()
    # non-trivial running stats so that a reset would show
    bb.bn.running_mean.fill_(0.3)
    bb.bn.running_var.fill_(2.0)
    return PoseModel(bb, RuledHead(bb.output_shape(), tiny.TINY_LAYOUT), head_name="ruled", backbone_name="bn",
                     layout=tiny.TINY_LAYOUT)


def test_groups_and_learning_rates_as_declared() -> None:
    model = ruled_model()
    plan = plan_param_groups(model, model.param_group_rules(), lr=0.01, weight_decay=0.0)
    by_name = {g["name"]: g for g in plan.groups}
    assert list(by_name) == ["default", "backbone."]
    assert by_name["default"]["lr"] == 0.01 and by_name["default"]["weight_decay"] == 0.0
    assert by_name["backbone."]["lr"] == pytest.approx(0.001) and by_name["backbone."]["weight_decay"] == 0.5
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in by_name["default"]["params"]} == {"head.conv.weight", "head.conv.bias"}
    assert {names[id(p)] for p in by_name["backbone."]["params"]} == {"backbone.body.weight", "backbone.body.bias"}
    assert sorted(plan.frozen) == ["backbone.bn.bias", "backbone.bn.weight", "backbone.stem.bias",
                                   "backbone.stem.weight"]
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in plan.frozen)
    assert plan.frozen_bn == [model.backbone.bn]
    set_train_mode(model, plan.frozen_bn)
    assert model.training and model.head.training and not model.backbone.bn.training


def test_rule_errors_are_one_line() -> None:
    model = ruled_model()
    with pytest.raises(ConfigError, match=r"'head\.nothing\.' match no parameter"):
        plan_param_groups(model, [ParamGroupRule("head.nothing.")], lr=1.0, weight_decay=0.0)
    with pytest.raises(ConfigError, match="every parameter of the model is frozen"):
        plan_param_groups(model, [ParamGroupRule("backbone.", frozen=True), ParamGroupRule("head.", frozen=True)],
                          lr=1.0, weight_decay=0.0)
    with pytest.raises(ConfigError, match=r"param_groups\[0\]: unknown key\(s\) lr"):
        parse_rules([{"prefix": "backbone.", "lr": 3}])
    with pytest.raises(ConfigError, match=r"param_groups\[1\]: 'prefix' is required"):
        parse_rules([{"prefix": "a"}, {"lr_scale": 2}])
    with pytest.raises(ConfigError, match=r"param_groups\[0\]: .*lr_scale must be > 0"):
        parse_rules([{"prefix": "a", "lr_scale": 0}])
    with pytest.raises(ConfigError, match=r"param_groups\[0\].frozen must be true/false"):
        parse_rules([{"prefix": "a", "frozen": "yes"}])


def _components(**kw: Any) -> Any:
    comps = tiny.make_components(**kw)
    comps.model_factory = ruled_model
    return comps


def test_training_keeps_frozen_parts_and_bn_stats(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, [*_BASE, f"out={out}", "steps=3", "log_every=1"])
    torch.manual_seed(0)  # the trainer builds the model right after seeding with cfg.seed = 0
    before = ruled_model().state_dict()
    Trainer(cfg, _components()).fit()
    after, _ = read_checkpoint(out / "final.safetensors")
    for key in ("backbone.stem.weight", "backbone.stem.bias", "backbone.bn.weight", "backbone.bn.bias",
                "backbone.bn.running_mean", "backbone.bn.running_var", "backbone.bn.num_batches_tracked"):
        torch.testing.assert_close(after[key], before[key], msg=f"{key} changed although frozen")
    for key in ("backbone.body.weight", "head.conv.weight"):
        assert not torch.equal(after[key], before[key]), f"{key} did not train"
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["type"] == "train")
    # the head's train_defaults: lr 5e-3 (TinyHead); the backbone group at x0.1
    assert first["lr"] == pytest.approx(5e-3)
    assert first["lrs"] == {"default": pytest.approx(5e-3), "backbone.": pytest.approx(5e-4)}


def test_config_param_groups_come_before_the_heads(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # the config freezes the head's conv bias and gives the body x0.5; the head's rules still freeze the stem
    groups = json.dumps([{"prefix": "head.conv.bias", "frozen": True}, {"prefix": "backbone.body.", "lr_scale": 0.5}])
    cfg = load_config(None, [*_BASE, f"out={out}", "steps=3", "log_every=1", f"param_groups={groups}"])
    torch.manual_seed(0)  # the trainer builds the model right after seeding with cfg.seed = 0
    before = ruled_model().state_dict()
    Trainer(cfg, _components()).fit()
    after, _ = read_checkpoint(out / "final.safetensors")
    torch.testing.assert_close(after["head.conv.bias"], before["head.conv.bias"])
    torch.testing.assert_close(after["backbone.stem.weight"], before["backbone.stem.weight"])
    first = next(r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["type"] == "train")
    assert first["lrs"] == {"default": pytest.approx(5e-3), "backbone.body.": pytest.approx(2.5e-3)}
    with pytest.raises(ConfigError, match="must be a list of a mapping or null"):
        load_config(None, [*_BASE, "out=x", "param_groups=3"])


_BASE = ["head=tiny", "backbone=tiny", "data=tiny", "input_size=32", "progress=false", "tensorboard=false",
         "workers=0", "batch_size=4", "ckpt_every=0"]


# ---------------------------------------------------------------------------- a head's own augmentation
CALLS: list[dict[str, Any]] = []


class RecordingAugmentation:
    """Stands in for another method's transform factory; records how the engine built it."""

    def __init__(self, input_size: int, *, layout: Any, output_sizes: Mapping[str, tuple[int, int]], **options: Any) -> None:
        CALLS.append({"input_size": input_size, "layout": layout.name, "output_sizes": dict(output_sizes),
                      "options": options})

    def __call__(self, sample: Mapping[str, Any], rng: Any = None) -> dict[str, Any]:
        return dict(sample)


class OtherAugHead(tiny.TinyHead):
    augmentation = "test_engine_params:RecordingAugmentation"


def test_a_head_naming_another_augmentation_gets_it(tmp_path: Path) -> None:
    from test_engine_build import _write_dataset

    from bupose.core.engine.build import check_config
    from bupose.core.plugins import Registry, get_registry
    from bupose.core.specs import BackboneSpec, HeadSpec

    reg = Registry()
    for kind in ("layouts", "datasets"):
        for spec in get_registry().components[kind].values():
            reg.add(kind, spec)
    reg.add("backbones", BackboneSpec(name="tiny", factory="test_engine_helpers:TinyBackbone",
                                      outputs={"s4": FeatureShape(8, 4)}, summary="tiny"))
    for name, factory in (("other", "test_engine_params:OtherAugHead"), ("plain", "test_engine_helpers:TinyHead")):
        reg.add("heads", HeadSpec(name=name, factory=factory, layouts=("coco17",),
                                  codec="test_engine_helpers:TinyCodec", summary=name))
    data = _write_dataset(tmp_path / "d")
    cfg = load_config(None, ["head=other", "backbone=tiny", f"data={data}", f"out={tmp_path / 'o'}", "input_size=32",
                             "augment.strength=2"])
    plan = check_config(cfg, registry=reg)
    # the factory string imports this file as the module test_engine_params (pytest imports it under another name)
    mod = sys.modules["test_engine_params"]
    assert isinstance(plan.transform, mod.RecordingAugmentation)
    assert plan.augmentation == "test_engine_params:RecordingAugmentation"
    assert mod.CALLS == [{"input_size": 32, "layout": "coco17", "output_sizes": {"1/4": (8, 8)}, "options": {"strength": 2}}]
    assert plan.train_defaults == dict(tiny.TinyHead.train_defaults)
    # the default is core's random affine, sized by the codec's output sizes
    from bupose.core.data.transforms import BottomUpRandomAffine

    cfg = load_config(None, ["head=plain", "backbone=tiny", f"data={data}", f"out={tmp_path / 'p'}", "input_size=32"])
    plan = check_config(cfg, registry=reg)
    assert isinstance(plan.transform, BottomUpRandomAffine) and plan.transform.heatmap_sizes == (8,)
