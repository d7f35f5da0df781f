"""Batch and collate: dense targets stacked, instances and metas per image, padding, clear errors;
PoseModel/Head on a Batch."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from bupose.core.batch import Batch, collate
from bupose.core.codec import Encoded, image_points
from bupose.core.engine.data import EncodedDataset, input_matrix
from bupose.core.model import Head, PoseModel

sys.path.insert(0, str(Path(__file__).parent))
import test_engine_helpers as tiny


def _item(n_people: int, hw: tuple[int, int] = (8, 8), **meta: object) -> dict:
    return {
        "image": torch.rand(3, *hw),
        "dense": {"heatmap": torch.rand(3, 2, 2)},
        "instances": {"keypoints": torch.rand(n_people, 3, 3), "areas": torch.rand(n_people)},
        "meta": dict(meta),
    }


def test_collate_stacks_dense_keeps_instances_per_image() -> None:
    items = [_item(2, image_id=1), _item(0, image_id=2), _item(5, image_id=3)]
    b = collate(items)
    assert len(b) == 3 and b.images.shape == (3, 3, 8, 8) and b.pad_mask is None
    assert b.targets["heatmap"].shape == (3, 3, 2, 2)
    torch.testing.assert_close(b.targets["heatmap"][1], items[1]["dense"]["heatmap"])
    assert [len(i["keypoints"]) for i in b.instances] == [2, 0, 5]
    assert b.instances[2]["keypoints"] is items[2]["instances"]["keypoints"]
    assert [m["image_id"] for m in b.metas] == [1, 2, 3]
    assert b.metas[0]["input_hw"] == (8, 8) and b.metas[0]["flipped"] is False


def test_collate_rejects_a_field_that_is_neither() -> None:
    item = dict(_item(1), boxes=torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"'boxes'.*neither") as e:
        collate([_item(1), item])
    assert "\n" not in str(e.value)


def test_collate_dense_shape_mismatch_names_the_field() -> None:
    a, b = _item(1), _item(1)
    b["dense"]["heatmap"] = torch.rand(3, 4, 4)
    with pytest.raises(ValueError, match="dense field 'heatmap' has different shapes"):
        collate([a, b])
    b["dense"] = {"other": torch.rand(1)}
    with pytest.raises(ValueError, match="dense fields"):
        collate([a, b])
    b = _item(1)
    b["dense"]["heatmap"] = ["not", "a tensor"]
    with pytest.raises(TypeError, match="dense field 'heatmap' of item 1"):
        collate([a, b])


def test_collate_pads_images_of_different_sizes() -> None:
    a, b = _item(1, hw=(6, 9)), _item(1, hw=(8, 5))
    batch = collate([a, b], size_divisibility=4)
    assert batch.images.shape == (2, 3, 8, 12)
    assert batch.pad_mask is not None and batch.pad_mask.dtype == torch.bool
    torch.testing.assert_close(batch.images[0, :, :6, :9], a["image"])
    assert not batch.pad_mask[0, :6, :9].any() and batch.pad_mask[0, 6:].all() and batch.pad_mask[0, :, 9:].all()
    assert float(batch.images[0, :, 6:].abs().sum()) == 0.0
    assert batch.metas[0]["input_hw"] == (6, 9) and batch.metas[1]["input_hw"] == (8, 5)
    # an item's own pad mask is kept
    c = dict(_item(1), pad_mask=torch.zeros(8, 8, dtype=torch.bool))
    c["pad_mask"][:, 6:] = True
    same = collate([c, _item(1)])
    assert same.pad_mask is not None and same.pad_mask[0, :, 6:].all() and not same.pad_mask[1].any()


def test_batch_validates_and_moves() -> None:
    with pytest.raises(ValueError, match="pad_mask must be a"):
        Batch(images=torch.zeros(2, 3, 4, 4), pad_mask=torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="2 entries for 1 images"):
        Batch(images=torch.zeros(1, 3, 4, 4), metas=[{}, {}])
    with pytest.raises(ValueError, match=r"targets\['x'\] must be a tensor with 1 rows"):
        Batch(images=torch.zeros(1, 3, 4, 4), targets={"x": torch.zeros(2)})
    b = collate([_item(2), _item(1)]).to("cpu")
    assert isinstance(b, Batch) and b.device.type == "cpu" and len(b.instances) == 2
    bare = Batch(images=torch.zeros(2, 3, 5, 7))
    assert bare.metas == [{"image_hw": (5, 7), "input_hw": (5, 7), "flipped": False}] * 2 and bare.instances == []


class _Recorder(Head):
    """Records the batch its forward and loss receive."""

    def __init__(self, input_shapes, layout) -> None:  # type: ignore[no-untyped-def]
        super().__init__(input_shapes, layout)
        self.seen: list[Batch | None] = []
        self.conv = torch.nn.Conv2d(8, 3, 1)

    def forward(self, features: Mapping[str, torch.Tensor], batch: Batch | None = None) -> dict[str, torch.Tensor]:
        self.seen.append(batch)
        return {"heatmap": self.conv(features["s4"])}

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        self.seen.append(batch)
        return {"n": torch.tensor(float(sum(len(i["keypoints"]) for i in batch.instances)))}


def test_pose_model_passes_the_batch_to_the_head() -> None:
    bb = tiny.TinyBackbone()
    head = _Recorder(bb.output_shape(), tiny.TINY_LAYOUT)
    model = PoseModel(bb, head, head_name="r", backbone_name="t", layout=tiny.TINY_LAYOUT)
    x = torch.rand(2, 3, 32, 32)
    out_plain = model(x)
    assert isinstance(head.seen[-1], Batch) and head.seen[-1].images is x and head.seen[-1].pad_mask is None
    batch = Batch(images=x, pad_mask=torch.zeros(2, 32, 32, dtype=torch.bool),
                  instances=[{"keypoints": torch.zeros(3, 3, 3)}, {"keypoints": torch.zeros(1, 3, 3)}])
    out = model(batch)
    assert head.seen[-1] is batch
    torch.testing.assert_close(out["heatmap"], out_plain["heatmap"])
    assert float(model.loss(out, batch)["n"]) == 4.0 and head.seen[-1] is batch


def test_encoded_dataset_items_and_the_flip_in_the_matrix() -> None:
    m = np.array([[0.5, 0.0, 3.0], [0.0, 0.5, 1.0]])

    def transform(sample: dict) -> dict:
        img = sample["image"][::2, ::2][:, ::-1].copy()  # x0.5 then a mirror of the 16-px output
        kp = sample["keypoints"].copy()
        kp[:, :, :2] = kp[:, :, :2] @ m[:, :2].T + m[:, 2]
        kp[:, :, 0] = img.shape[1] - 1 - kp[:, :, 0]
        return {**sample, "image": img, "keypoints": kp, "matrix": m, "flipped": True, "image_id": 7}

    ds = EncodedDataset(tiny.TinyDataset(n=2), transform=transform, encode=tiny.TinyCodec(16).encode,
                        to_tensor=tiny.to_tensor, sample_keys=("keypoints",))
    item = ds[(0, 1)]
    assert set(item) == {"image", "dense", "instances", "meta"}
    meta = item["meta"]
    assert meta["image_id"] == 7 and meta["image_hw"] == (32, 32) and meta["input_hw"] == (16, 16)
    assert meta["flipped"] is True
    # meta["matrix"] includes the flip: image points map straight onto the flipped input points
    raw = tiny.TinyDataset(n=2)[1]["keypoints"]
    np.testing.assert_allclose(image_points(item["instances"]["keypoints"].numpy(), meta)[:, :, :2], raw[:, :, :2],
                               atol=1e-5)
    assert input_matrix({"image": np.zeros((4, 4, 3)), "matrix": m})[0, 0] == 0.5
    batch = collate([ds[(0, 0)], item])
    assert batch.targets["heatmap"].shape == (2, 3, 4, 4) and batch.metas[1]["flipped"]


def test_encoded_dataset_errors() -> None:
    ds = EncodedDataset(tiny.TinyDataset(n=2), transform=None, encode=tiny.TinyCodec().encode,
                        to_tensor=tiny.to_tensor, sample_keys=("keypoints", "boxes"))
    with pytest.raises(ValueError, match="sample 0: the augmented sample lacks 'boxes'"):
        ds[(0, 0)]
    ds = EncodedDataset(tiny.TinyDataset(n=2), transform=None, encode=lambda s: {"heatmap": torch.zeros(1)},
                        to_tensor=tiny.to_tensor)
    with pytest.raises(TypeError, match=r"must return a bupose\.core\.codec\.Encoded"):
        ds[(0, 0)]


def test_encoded_reads_as_its_dense_targets() -> None:
    e = Encoded(dense={"a": torch.zeros(2)}, instances={"k": torch.zeros(1, 3)})
    assert set(e) == {"a"} and len(e) == 1 and e["a"].shape == (2,)
