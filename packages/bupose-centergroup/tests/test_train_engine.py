"""Both training stages through core's engine on a few synthetic scenes (hrnet_w18_small, 64 px):
stage 1 trains the detector; stage 2 starts from it with the official parameter groups (detector at
0.1x the learning rate with frozen batch norm) and the grouping losses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bupose.core.data.synth import generate
from bupose.core.engine.build import train
from bupose.core.engine.config import TrainConfig, apply_overrides

pytest.importorskip("bupose.hrnet", reason="bupose-hrnet (test extra) provides the backbone")


def _cfg(out: Path, data: Path, *items: str) -> TrainConfig:
    cfg = TrainConfig(head="centergroup", backbone="hrnet_w18_small", data=str(data), out=str(out))
    base = ["input_size=64", "batch_size=2", "workers=0", "tensorboard=false", "progress=false", "eval_every=0",
            "log_every=1", "device=cpu", "seed=0"]
    return apply_overrides(cfg, [*base, *items])


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"train"' in line]


def test_stage1_then_stage2(tmp_path: Path) -> None:
    data = generate(tmp_path / "data", num_images=4, size=64, seed=2, difficulty="easy", progress=False).parent
    s1 = train(_cfg(tmp_path / "s1", data, "steps=3", "lr=1e-3", 'head_kwargs={"stage": 1}'))
    rec1 = _records(tmp_path / "s1")
    assert set(rec1[0]["losses"]) == {"heatmap_loss", "loss"}
    assert s1.final_weights is not None
    s2 = train(_cfg(tmp_path / "s2", data, "steps=3", "grad_clip=1.0", f"init_weights={s1.final_weights}",
                    'augment={"max_rotation": 0}'))
    rec2 = _records(tmp_path / "s2")
    assert set(rec2[0]["losses"]) >= {"heatmap_loss", "person_loss", "vis_loss", "loc_loss"}
    assert all(torch.isfinite(torch.tensor(v)) for r in rec2 for v in r["losses"].values())
    from bupose.core.weights import read_checkpoint

    sd1, _ = read_checkpoint(s1.final_weights)
    sd2, _ = read_checkpoint(s2.final_weights)
    # frozen detector batch norm: running statistics unchanged by stage 2
    bn = "head.keypoint_head.deconv_layers.0.0.1.running_mean"
    assert torch.equal(sd1[bn], sd2[bn])
    assert torch.equal(sd1["backbone.bn1.running_var"], sd2["backbone.bn1.running_var"])
    # the grouping model trains
    key = "head.group_model.prediction_heads.3.mlp_person_tp.layers.2.bias"
    assert not torch.equal(sd1[key], sd2[key])


def test_param_groups_follow_the_official_split() -> None:
    from bupose.core import build_model
    from bupose.core.engine.params import plan_param_groups

    model = build_model("centergroup", "hrnet_w18_small")
    plan = plan_param_groups(model, model.param_group_rules(), lr=1e-4, weight_decay=0.0)
    lrs = {}
    for g in plan.groups:
        for p in g["params"]:
            lrs[id(p)] = g["lr"]
    assert lrs[id(model.backbone.conv1.weight)] == pytest.approx(1e-5)
    assert lrs[id(model.head.keypoint_head.final_layers[0].weight)] == pytest.approx(1e-5)
    assert lrs[id(model.head.kp_embed_cnn[0].weight)] == pytest.approx(1e-4)
    assert lrs[id(model.head.group_model.initial_mlp.layers[0].weight)] == pytest.approx(1e-4)
    stage1 = build_model("centergroup", "hrnet_w18_small", head_kwargs={"stage": 1})
    assert stage1.param_group_rules() == []
