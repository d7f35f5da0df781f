"""bupose plugin module of bupose-grouppose: the ``grouppose`` head and its official checkpoints.

Imports nothing heavy: every factory is a lazy ``module:attr`` string.
"""

from __future__ import annotations

from collections.abc import Callable

from bupose.core import HeadSpec, WeightsSpec, hookimpl

LICENCE = (
    "Apache-2.0 (Michel-liu/GroupPose; the code derives from ED-Pose and DINO, also Apache-2.0: reuse, "
    "modification and redistribution are allowed, keeping the licence and NOTICE and stating changes; "
    "the weights were trained on COCO/CrowdPose, whose terms apply to the data)"
)
SOURCE = "Michel-liu/GroupPose README (Baidu / OneDrive / Google Drive links) -> {file}; licence: " + LICENCE

HEAD = HeadSpec(
    name="grouppose",
    factory="bupose.grouppose.model:GroupPoseHead",
    summary="GroupPose: DETR-style set predictor, two-stage queries, grouped decoder attention (ICCV 2023)",
    codec="bupose.grouppose.codec:GroupPoseCodec",
    pipeline="bupose.grouppose.pipeline:GroupPosePipeline",
    options="bupose.grouppose.options:GroupPoseOptions",
    input_spec="short side 800 (long side <= 1333), ImageNet normalisation, padded bottom-right with a mask",
    layouts=("coco17", "crowdpose14"),
)

_MODEL_WEIGHTS = (
    ("grouppose_r50_coco", "grouppose_r50_coco.pth", "resnet50", "coco17", "R50_COCO", "R-50 COCO"),
    ("grouppose_swint_coco", "grouppose_swinT_coco.pth", "swin_t", "coco17", "SWIN_T_COCO", "Swin-T COCO"),
    ("grouppose_swinl_coco", "grouppose_swinL_coco.pth", "swin_l", "coco17", "SWIN_L_COCO", "Swin-L COCO"),
    ("grouppose_swinl_crowdpose", "crowd_swinL.pth", "swin_l", "crowdpose14", "SWIN_L_CROWDPOSE", "Swin-L CrowdPose"),
)

# The official README's table (single scale, no flip: GroupPose has no test-time augmentation).
_PAPER_AP: dict[str, tuple[tuple[str, float], ...]] = {
    "grouppose_r50_coco": (("COCO val2017", 72.0), ("COCO test-dev2017", 70.2)),
    "grouppose_swint_coco": (("COCO val2017", 73.6), ("COCO test-dev2017", 72.1)),
    "grouppose_swinl_coco": (("COCO val2017", 74.8), ("COCO test-dev2017", 72.8)),
    "grouppose_swinl_crowdpose": (("CrowdPose test", 74.1),),
}

WEIGHTS: tuple[WeightsSpec, ...] = tuple(
    WeightsSpec(
        name=name,
        factory=f"bupose.grouppose.convert:{attr}",
        summary=f"official GroupPose {what} model (Apache-2.0, derived from ED-Pose/DINO)",
        head="grouppose",
        backbone=backbone,
        layout=layout,
        file_names=(file_name,),
        source=SOURCE.format(file=file_name),
        role="model",
        source_page="https://github.com/Michel-liu/GroupPose",
        licence="Apache-2.0 (Michel-liu/GroupPose; its code derives from IDEA's ED-Pose and DINO, also Apache-2.0)",
        paper_ap=_PAPER_AP[name],
    )
    for name, file_name, backbone, layout, attr, what in _MODEL_WEIGHTS
)


@hookimpl
def bupose_register_heads(register: Callable[[HeadSpec], None]) -> None:
    register(HEAD)


@hookimpl
def bupose_register_weights(register: Callable[[WeightsSpec], None]) -> None:
    for spec in WEIGHTS:
        register(spec)
