"""CodecContract passes a correct codec and fails codecs broken in the ways it promises to catch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from bupose.core.codec import BaseCodec, Encoded, image_points
from bupose.core.poses import Poses
from bupose.core.testing import CodecContract


class OneHotCodec(BaseCodec):
    """A one-hot map per joint at stride 4 (the nearest cell) <-> per-joint argmax (one person)."""

    sample_keys = ("keypoints",)
    output_fields = ("heatmap",)
    stride = 4

    def output_sizes(self, input_size: Any = None) -> dict[str, tuple[int, int]]:
        h, w = self.input_hw if input_size is None else (input_size, input_size)
        return {"1/4": (h // self.stride, w // self.stride)}

    def encode(self, sample: Mapping[str, Any]) -> Encoded:
        self.check_sample(sample)
        h, w = self.input_hw[0] // self.stride, self.input_hw[1] // self.stride
        heat = torch.zeros(self.num_joints, h, w)
        kps = np.asarray(sample["keypoints"], dtype=np.float64).reshape(-1, self.num_joints, 3)
        for person in kps:
            for j, (x, y, v) in enumerate(person):
                if v > 0:
                    heat[j, min(h - 1, round(y / self.stride)), min(w - 1, round(x / self.stride))] = 1.0
        return Encoded(dense={"heatmap": heat}, instances={"keypoints": torch.from_numpy(kps).float()})

    def decode(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]]) -> list[Poses]:
        hm = outputs["heatmap"]
        b, j, _, w = hm.shape
        score, idx = hm.reshape(b, j, -1).max(dim=2)
        out = []
        for i in range(b):
            if float(score[i].mean()) < 0.5:
                out.append(Poses.empty(j, self.layout.name))
                continue
            kp = np.stack([(idx[i] % w).numpy() * self.stride, (idx[i] // w).numpy() * self.stride,
                           score[i].numpy()], axis=1)[None].astype(np.float64)
            out.append(Poses(self.map_back(kp, metas[i]), np.array([float(score[i].mean())]), self.layout.name))
        return out

    def map_back(self, kp: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
        return image_points(kp, meta)


class IgnoresMatrix(OneHotCodec):
    def map_back(self, kp: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
        return kp


class NoKeyCheck(OneHotCodec):
    def check_sample(self, sample: Mapping[str, Any]) -> None:
        sample["keypoints"]  # a bare KeyError('keypoints') is not a clear error


class WrongSizes(OneHotCodec):
    """Declares sizes its targets do not have."""

    def output_sizes(self, input_size: Any = None) -> dict[str, tuple[int, int]]:
        return {"1/8": (8, 8)}


class AlwaysSomeone(OneHotCodec):
    def decode(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]]) -> list[Poses]:
        outputs = {"heatmap": outputs["heatmap"] + torch.rand_like(outputs["heatmap"]) + 1.0}
        return super().decode(outputs, metas)


class Shifted(OneHotCodec):
    def map_back(self, kp: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
        out = image_points(kp, meta)
        out[..., 0] += 6.0
        return out


def _suite(codec_cls: type[OneHotCodec]) -> CodecContract:
    class Suite(CodecContract):
        num_people = 1
        tolerance_px = 3.0  # the nearest cell at stride 4: at most 2·sqrt(2) px off

        def make_codec(self) -> Any:
            return codec_cls("coco17", self.input_size)

    return Suite()


TESTS = [name for name in dir(CodecContract) if name.startswith("test_")]


@pytest.mark.parametrize("test", TESTS)
def test_a_correct_codec_passes(test: str) -> None:
    getattr(_suite(OneHotCodec), test)()


@pytest.mark.parametrize(
    ("codec_cls", "test", "message"),
    [
        (IgnoresMatrix, "test_round_trip_batched_through_the_matrix", "image pixels via meta"),
        (NoKeyCheck, "test_missing_sample_key_is_one_clear_error", "unclear error"),
        (WrongSizes, "test_encode_shapes_match_output_sizes", "not at any of the output sizes"),
        (AlwaysSomeone, "test_empty_sample_decodes_to_nobody", "no people encoded, 1 decoded"),
        (Shifted, "test_round_trip_recovers_people", "person 0 not recovered"),
    ],
)
def test_a_broken_codec_fails(codec_cls: type[OneHotCodec], test: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        getattr(_suite(codec_cls), test)()
