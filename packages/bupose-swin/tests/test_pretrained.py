"""Original Swin ImageNet files -> backbones: head/norm/attn_mask dropped by name, the rest strict.

Synthetic files in the classification layout: the backbone keys without the output norms, the
classifier's ``norm`` and ``head``, ``attn_mask`` buffers on the shifted blocks, wrapped as
``{"model": ...}``. Swin-T files carry recipe values; Swin-L files are meta tensors (detection only).
"""

from __future__ import annotations

import pytest
import torch
from _swin_golden import recipe

from bupose.core.cli.convert import convert_checkpoint
from bupose.core.model import build_backbone
from bupose.core.weights import CheckpointMismatchError, detect_official, read_checkpoint
from bupose.swin.config import SwinConfig, swin_config
from bupose.swin.pretrained import (
    IMAGENET_SWIN_L,
    IMAGENET_SWIN_T,
    convert_imagenet,
    expected_shapes,
    load_imagenet_pretrained,
)


def _file(config: SwinConfig | str, *, meta: bool = False, classes: int = 1000) -> dict:
    config = swin_config(config) if isinstance(config, str) else config
    shapes = {
        k: s for k, s in expected_shapes(config).items() if not k.startswith(("norm1.", "norm2.", "norm3."))
    }
    last = config.stage_channels(len(config.depths) - 1)
    shapes.update(
        {
            "norm.weight": (last,),
            "norm.bias": (last,),
            "head.weight": (classes, last),
            "head.bias": (classes,),
        }
    )
    for i, depth in enumerate(config.depths):
        for j in range(1, depth, 2):
            shapes[f"layers.{i}.blocks.{j}.attn_mask"] = (4, config.window_size**2, config.window_size**2)
    sd = {}
    for key, shape in shapes.items():
        if key.endswith("relative_position_index"):
            from bupose.swin.model import relative_position_index

            sd[key] = relative_position_index(config.window_size)
        elif meta:
            sd[key] = torch.empty(shape, device="meta")
        else:
            sd[key] = recipe.golden_tensor(key, shape)
    return {"model": sd}


@pytest.fixture(scope="module")
def tiny_file() -> dict:
    return _file("swin_t")


def test_convert_drops_head_norm_and_masks_fills_output_norms(tiny_file) -> None:
    sd = tiny_file["model"]
    out = convert_imagenet(tiny_file, "swin_t")
    assert list(out) == list(expected_shapes("swin_t"))
    assert not any(k.startswith(("head.", "norm.")) or k.endswith("attn_mask") for k in out)
    assert out["layers.2.blocks.5.mlp.fc2.weight"] is sd["layers.2.blocks.5.mlp.fc2.weight"]
    assert torch.equal(out["norm3.weight"], torch.ones(768)) and torch.equal(
        out["norm1.bias"], torch.zeros(192)
    )


def test_load_file_with_weights_only(tiny_file, tmp_path) -> None:
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save(tiny_file, path)
    backbone = build_backbone("swin_t")
    assert load_imagenet_pretrained(backbone, path) is backbone
    sd = tiny_file["model"]
    for key, value in backbone.state_dict().items():
        if key in sd:
            assert torch.equal(value, sd[key]), key


def test_missing_index_is_filled_and_a_wrong_one_is_an_error(tiny_file) -> None:
    sd = dict(tiny_file["model"])
    del sd["layers.0.blocks.0.attn.relative_position_index"]
    out = convert_imagenet(sd, "swin_t")
    assert torch.equal(
        out["layers.0.blocks.0.attn.relative_position_index"],
        out["layers.3.blocks.1.attn.relative_position_index"],
    )
    sd["layers.1.blocks.1.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"layers\.1\.blocks\.1\.attn\.relative_position_index differs from the constant",
    ):
        convert_imagenet(sd, "swin_t")


def test_mismatches_are_listed_with_the_file_name(tiny_file) -> None:
    sd = dict(tiny_file["model"])
    del sd["layers.1.blocks.0.mlp.fc1.bias"]
    sd["absolute_pos_embed"] = torch.zeros(1, 3136, 96)
    sd["layers.0.blocks.0.attn.qkv.weight"] = torch.zeros(3, 96)
    with pytest.raises(CheckpointMismatchError) as err:
        convert_imagenet(sd, "swin_t", where="swin.pth")
    msg = str(err.value)
    assert msg.startswith("swin.pth (after dropping head.*, norm.* and *.attn_mask)")
    assert "missing keys: layers.1.blocks.0.mlp.fc1.bias" in msg
    assert "unexpected keys: absolute_pos_embed" in msg
    assert "layers.0.blocks.0.attn.qkv.weight (3, 96) vs (288, 96)" in msg


def test_detect_tells_the_presets_and_windows_apart(tiny_file) -> None:
    large = _file("swin_l", meta=True, classes=21841)
    large_w7 = _file(SwinConfig(192, (2, 2, 18, 2), (6, 12, 24, 48), 7), meta=True)
    assert IMAGENET_SWIN_T.detect(tiny_file) and not IMAGENET_SWIN_L.detect(tiny_file)
    assert IMAGENET_SWIN_L.detect(large) and not IMAGENET_SWIN_T.detect(large)
    assert not IMAGENET_SWIN_L.detect(large_w7), "a window-7 Swin-L is not the window-12 preset"
    assert not IMAGENET_SWIN_T.detect(
        {k: v for k, v in tiny_file["model"].items() if not k.startswith("head.")}
    )
    assert not IMAGENET_SWIN_T.detect({"model": 3})
    assert detect_official(tiny_file, role="backbone").name == "swin_t_imagenet"
    assert detect_official(large, role="backbone").name == "swin_l_imagenet22k"


def test_bupose_convert_writes_a_backbone_safetensors(tiny_file, tmp_path) -> None:
    src = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save(tiny_file, src)
    meta = convert_checkpoint(src, tmp_path / "swin_t.safetensors")
    assert (
        meta["role"] == "backbone"
        and meta["backbone"] == "swin_t"
        and meta["converted_from"] == "swin_t_imagenet"
    )
    tensors, stored = read_checkpoint(tmp_path / "swin_t.safetensors")
    assert stored["backbone"] == "swin_t" and set(tensors) == set(expected_shapes("swin_t"))
    assert torch.equal(tensors["patch_embed.proj.weight"], tiny_file["model"]["patch_embed.proj.weight"])
