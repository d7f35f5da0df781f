"""Official files: strict loads of all four manifests (aliases included and checked), the official
training file under ``weights_only=True``, ``bupose convert`` to safetensors without aliases, and
the export back to the official layout (aliases re-emitted)."""

from __future__ import annotations

import argparse

import _grouppose_golden as _golden
import pytest
import torch
from click.testing import CliRunner

from bupose.core.inference import Checkpoint, load_weights
from bupose.core.model import build_model
from bupose.core.weights import (
    CheckpointError,
    CheckpointMismatchError,
    load_state_dict_strict,
    read_checkpoint,
)
from bupose.grouppose.convert import (
    R50_COCO,
    SWIN_L_COCO,
    SWIN_L_CROWDPOSE,
    SWIN_T_COCO,
    alias_keys,
    detect_variant,
    from_official,
    to_official,
)

CONVERTERS = {"r50_coco": R50_COCO, "swinT_coco": SWIN_T_COCO, "swinL_coco": SWIN_L_COCO,
              "swinL_crowdpose": SWIN_L_CROWDPOSE}  # fmt: skip


@pytest.mark.parametrize("variant", list(_golden.MANIFESTS))
def test_manifest_counts_aliases_and_detection(variant: str) -> None:
    rows = _golden.manifest(variant)
    assert len(rows) == _golden.MANIFESTS[variant][1]
    sd = _golden.build_state_dict(variant, device="meta")
    aliases = alias_keys(sd)
    assert len(aliases) == 48 and aliases == _golden.aliases()
    for name, conv in CONVERTERS.items():
        assert conv.detect(sd) == (name == variant), (name, variant)
    v = detect_variant(sd)
    assert v is not None and v.dec_layers == 6 and v.num_joints == (14 if "crowdpose" in variant else 17)


@pytest.mark.parametrize("variant", ["swinL_coco", "swinL_crowdpose"])
def test_swin_l_strict_load_on_meta(variant: str) -> None:
    conv = CONVERTERS[variant]
    with torch.device("meta"):
        model = build_model("grouppose", conv.backbone, conv.layout)
    converted = conv.convert(_golden.build_state_dict(variant, device="meta"))
    assert len(converted) == _golden.MANIFESTS[variant][1] - 48
    own = model.state_dict()
    assert set(converted) == set(own)
    bad = [k for k, v in own.items() if tuple(v.shape) != tuple(converted[k].shape)]
    assert bad == []


def test_swin_t_strict_load_with_recipe_values_and_consts() -> None:
    sd = _golden.build_state_dict("swinT_coco")
    model = build_model("grouppose", "swin_t")
    converted = SWIN_T_COCO.convert(sd)
    load_state_dict_strict(model, converted, "swin-T recipe")
    consts = _golden.fixture("consts_swin.pt")
    w7 = next(v for k, v in consts.items() if k.startswith("window7/"))
    idx = model.state_dict()["backbone.layers.0.blocks.0.attn.relative_position_index"]
    assert torch.equal(idx, w7)
    assert torch.equal(model.head.class_embed[3].weight, sd["class_embed.3.weight"])


@pytest.mark.parametrize("norm", ["bn", "frozen_bn"])
def test_r50_strict_load_both_norms(r50_official_sd, norm: str) -> None:
    model = build_model("grouppose", "resnet50", backbone_kwargs={"norm": norm, "frozen_stages": 1} if norm == "frozen_bn" else None)
    converted = from_official(r50_official_sd, resnet_norm=norm)
    load_state_dict_strict(model, converted, f"r50 {norm}")
    counters = [k for k in converted if k.endswith("num_batches_tracked")]
    assert len(counters) == (53 if norm == "bn" else 0)


def test_training_file_loads_with_weights_only(r50_training_file) -> None:
    raw, meta = read_checkpoint(r50_training_file)
    assert meta == {} and set(raw) == {"model", "optimizer", "lr_scheduler", "epoch", "args"}
    assert isinstance(raw["args"], argparse.Namespace)
    ck = Checkpoint.read(r50_training_file)
    spec = ck.official()
    assert spec is not None and spec.name == "grouppose_r50_coco" and ck.layout() == "coco17"
    model = build_model("grouppose", "resnet50")
    assert load_weights(model, r50_training_file, checkpoint=ck) == {"official": "grouppose_r50_coco"}
    # the allow-list admits the Namespace, not arbitrary classes
    evil = r50_training_file.parent / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "args": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        read_checkpoint(evil)


class _Evil:
    pass


def test_aliases_must_match(r50_official_sd) -> None:
    sd = dict(r50_official_sd)
    sd["transformer.decoder.class_embed.2.bias"] = sd["class_embed.2.bias"] + 1
    with pytest.raises(CheckpointError, match=r"alias transformer\.decoder\.class_embed\.2\.bias differs"):
        from_official(sd)
    sd = dict(r50_official_sd)
    del sd["transformer.decoder.pose_embed.5.layers.2.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: transformer\.decoder\.pose_embed\.5\.layers\.2\.weight"):
        from_official(sd)


def test_unexpected_and_missing_head_keys_fail_the_strict_load(r50_official_sd) -> None:
    model = build_model("grouppose", "resnet50")
    sd = dict(r50_official_sd)
    sd["transformer.decoder.norm.weight"] = torch.ones(256)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys: head\.transformer\.decoder\.norm\.weight"):
        load_state_dict_strict(model, from_official(sd), "extra")
    sd = dict(r50_official_sd)
    del sd["transformer.enc_output_norm.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: head\.transformer\.enc_output_norm\.bias"):
        load_state_dict_strict(model, from_official(sd), "missing")


def test_export_back_to_official_layout(r50_official_sd) -> None:
    back = to_official(from_official(r50_official_sd), "resnet50")
    assert list(back) == [k for k, *_ in _golden.manifest("r50_coco")]
    assert all(torch.equal(back[k], r50_official_sd[k]) for k in back)


def test_bupose_convert_writes_safetensors_without_aliases(r50_training_file, tmp_path) -> None:
    from safetensors import safe_open

    from bupose.core.cli import build_cli

    out = tmp_path / "r50.safetensors"
    res = CliRunner().invoke(build_cli(), ["convert", str(r50_training_file), str(out)])
    assert res.exit_code == 0, res.output
    assert "grouppose_r50_coco" in res.output
    with safe_open(str(out), framework="pt") as f:
        keys = list(f.keys())
    assert len(keys) == 662 - 48 + 53 and not any(k.startswith("head.transformer.decoder.class_embed") for k in keys)
    model = build_model("grouppose", "resnet50")
    meta = load_weights(model, out)
    assert meta["head"] == "grouppose" and meta["backbone"] == "resnet50" and meta["layout"] == "coco17"


def test_weights_are_listed_with_licence() -> None:
    from bupose.core.cli import build_cli

    res = CliRunner().invoke(build_cli(), ["list", "weights", "--verbose"])
    assert res.exit_code == 0, res.output
    for name in ("grouppose_r50_coco", "grouppose_swint_coco", "grouppose_swinl_coco", "grouppose_swinl_crowdpose"):
        assert name in res.output
    assert "Apache-2.0" in res.output and "ED-Pose/DINO" in res.output
