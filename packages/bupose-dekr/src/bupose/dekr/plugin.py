"""bupose plugin module of bupose-dekr: the ``dekr`` head (codec, pipeline, test options) and the
official checkpoints.

Imports nothing heavy: every factory is a lazy ``module:attr`` string.
"""

from __future__ import annotations

from collections.abc import Callable

from bupose.core import HeadSpec, WeightsSpec, hookimpl

SOURCE = "HRNet/DEKR README model zoo (OneDrive/Google Drive links at https://github.com/HRNet/DEKR)"

HEAD = HeadSpec(
    name="dekr",
    factory="bupose.dekr.model:DEKRHead",
    summary="DEKR: centre heatmap + disentangled per-joint offset regression (CVPR 2021)",
    codec="bupose.dekr.codec:DEKRCodec",
    pipeline="bupose.dekr.pipeline:DEKRPipeline",
    options="bupose.dekr.options:DEKROptions",
    input_spec=(
        "short side -> input size (512 W32 / 640 W48), long side to a multiple of lcm(size_multiple 64, "
        "the backbone's size divisibility), centred affine warp"
    ),
    layouts=("coco17", "crowdpose14"),
)

SOURCE_PAGE = "https://github.com/HRNet/DEKR"
LICENCE = "MIT (HRNet/DEKR)"

# Reported AP (HRNet/DEKR README, flip test, rescoring net), per model file.
_PAPER_AP: dict[str, tuple[tuple[str, float], ...]] = {
    "dekr_hrnetw32_coco": (
        ("COCO val2017, single scale", 68.0), ("COCO val2017, multi-scale", 70.7),
        ("COCO test-dev2017, single scale", 67.3),
    ),
    "dekr_hrnetw48_coco": (
        ("COCO val2017, single scale", 71.0), ("COCO val2017, multi-scale", 72.3),
        ("COCO test-dev2017, single scale", 70.0),
    ),
    "dekr_hrnetw32_crowdpose": (("CrowdPose test, single scale", 65.7), ("CrowdPose test, multi-scale", 67.0)),
    "dekr_hrnetw48_crowdpose": (("CrowdPose test, single scale", 67.3), ("CrowdPose test, multi-scale", 68.0)),
}  # fmt: skip

_MODEL_WEIGHTS = (
    ("dekr_hrnetw32_coco", "pose_dekr_hrnetw32_coco.pth", "hrnet_w32", "coco17", "W32_COCO", "pose_coco"),
    ("dekr_hrnetw48_coco", "pose_dekr_hrnetw48_coco.pth", "hrnet_w48", "coco17", "W48_COCO", "pose_coco"),
    (
        "dekr_hrnetw32_crowdpose", "pose_dekr_hrnetw32_crowdpose.pth", "hrnet_w32", "crowdpose14",
        "W32_CROWDPOSE", "pose_crowdpose",
    ),
    (
        "dekr_hrnetw48_crowdpose", "pose_dekr_hrnetw48_crowdpose.pth", "hrnet_w48", "crowdpose14",
        "W48_CROWDPOSE", "pose_crowdpose",
    ),
)
_RESCORE_WEIGHTS = (
    ("dekr_rescore_coco", "final_rescore_coco_kpt.pth", "coco17", "RESCORE_COCO"),
    ("dekr_rescore_crowdpose", "final_rescore_crowd_pose_kpt.pth", "crowdpose14", "RESCORE_CROWDPOSE"),
)

WEIGHTS: tuple[WeightsSpec, ...] = (
    *(
        WeightsSpec(
            name=name,
            factory=f"bupose.dekr.convert:{attr}",
            summary=f"official DEKR {backbone} {layout} model",
            head="dekr",
            backbone=backbone,
            layout=layout,
            file_names=(file_name,),
            source=f"{SOURCE}: model/{folder}/{file_name}",
            role="model",
            source_page=SOURCE_PAGE,
            licence=LICENCE,
            paper_ap=_PAPER_AP[name],
        )
        for name, file_name, backbone, layout, attr, folder in _MODEL_WEIGHTS
    ),
    *(
        WeightsSpec(
            name=name,
            factory=f"bupose.dekr.convert:{attr}",
            summary=f"official DEKR rescoring net (PredictOKSNet) for {layout}",
            head="dekr",
            layout=layout,
            file_names=(file_name,),
            source=f"{SOURCE}: model/rescore/{file_name}",
            role="rescore",
            source_page=SOURCE_PAGE,
            licence=LICENCE,
        )
        for name, file_name, layout, attr in _RESCORE_WEIGHTS
    ),
)


@hookimpl
def bupose_register_heads(register: Callable[[HeadSpec], None]) -> None:
    register(HEAD)


@hookimpl
def bupose_register_weights(register: Callable[[WeightsSpec], None]) -> None:
    for spec in WEIGHTS:
        register(spec)
