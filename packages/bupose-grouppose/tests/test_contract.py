"""bupose-core's HeadContract for ``grouppose`` on resnet50 and swin_t.

Small inputs (64x64) and a reduced transformer (20 queries, 2+2 layers, FFN 512) keep the
contract's training steps affordable on a CPU; every code path is the official one (the full-size
head is checked against the official forward in ``test_forward_golden.py``). core's CodecContract
is for dense-map codecs (it requires (C, h, w) output maps), so the set codec is tested in
``test_train.py`` instead.
"""

from __future__ import annotations

from typing import ClassVar

from bupose.core.model import PoseModel
from bupose.core.testing import HeadContract

SMALL = {"num_queries": 20, "enc_layers": 2, "dec_layers": 2, "dim_feedforward": 512}


class _Small:
    input_size: ClassVar[tuple[int, int]] = (64, 64)
    head_kwargs: ClassVar[dict] = SMALL
    codec_kwargs: ClassVar[dict] = {"num_queries": 20}
    train_lr: ClassVar[float] = 1e-4  # DETR-style training diverges at the contract's default 1e-3 (Swin-T)

    def make_model(self) -> PoseModel:
        model = super().make_model()  # type: ignore[misc]
        model.config["input_size"] = 64  # the pipeline's short side (a bupose-trained file stores it)
        return model


class TestGroupPoseOnResNet50(_Small, HeadContract):
    head_name = "grouppose"
    backbone_name = "resnet50"


class TestGroupPoseOnSwinT(_Small, HeadContract):
    head_name = "grouppose"
    backbone_name = "swin_t"
