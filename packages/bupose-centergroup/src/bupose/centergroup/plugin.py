"""bupose plugin module of bupose-centergroup: the ``centergroup`` head (codec, pipeline, test
options) and the official checkpoints (final models and detector-only "w_root" files).

Imports nothing heavy: every factory is a lazy ``module:attr`` string.
"""

from __future__ import annotations

from collections.abc import Callable

from bupose.core import HeadSpec, WeightsSpec, hookimpl

SOURCE = (
    "dvl-tum/center-group docs/MODEL_ZOO.md (vision.in.tum.de webshare) -> {where}{file}; licence: unknown - "
    "the repository has no licence file, so no reuse terms are granted (ask the authors before redistributing)"
)

HEAD = HeadSpec(
    name="centergroup",
    factory="bupose.centergroup.model:CenterGroupHead",
    summary="CenterGroup: HigherHRNet keypoints + person centres grouped by attention (ICCV 2021)",
    codec="bupose.centergroup.codec:CenterGroupCodec",
    pipeline="bupose.centergroup.pipeline:CenterGroupPipeline",
    options="bupose.centergroup.options:CenterGroupOptions",
    input_spec="short side -> input size (512 W32 / 640 W48), long side ceiled to a multiple of 64, centred affine warp",
    layouts=("coco17", "crowdpose14"),
)

_FILES = (
    ("centergroup_higherhrnet_w32_coco", "centergroup_higherhrnet_w32_coco_512x512.pth", "higherhrnet_w32", "coco17", "W32_COCO", "model"),
    ("centergroup_higherhrnet_w48_coco", "centergroup_higherhrnet_w48_coco_640x640.pth", "higherhrnet_w48", "coco17", "W48_COCO", "model"),
    ("centergroup_higherhrnet_w48_crowdpose", "centergroup_higherhrnet_w48_crowdpose_640x640.pth", "higherhrnet_w48", "crowdpose14", "W48_CROWDPOSE", "model"),
    ("centergroup_w_root_w32_coco", "higherhrnet_w_root_w32_coco_512x512.pth", "higherhrnet_w32", "coco17", "ROOT_W32_COCO", "detector"),
    ("centergroup_w_root_w48_coco", "higherhrnet_w_root_w48_coco_640x640.pth", "higherhrnet_w48", "coco17", "ROOT_W48_COCO", "detector"),
    ("centergroup_w_root_w48_crowdpose", "higherhrnet_w_root_w48_crowdpose_640x640.pth", "higherhrnet_w48", "crowdpose14", "ROOT_W48_CROWDPOSE", "detector"),
)

WEIGHTS: tuple[WeightsSpec, ...] = tuple(
    WeightsSpec(
        name=name,
        factory=f"bupose.centergroup.convert:{attr}",
        summary=(
            f"official CenterGroup {backbone} {layout} model (licence unknown: no licence file upstream)"
            if role == "model"
            else f"official HigherHRNet-with-centres detector {backbone} {layout}, stage-2 init via "
            "bupose.centergroup.convert.load_detector (licence unknown: no licence file upstream)"
        ),
        head="centergroup",
        backbone=backbone,
        layout=layout,
        file_names=(file_name,),
        source=SOURCE.format(where="" if role == "model" else "models/", file=file_name),
        role=role,
        source_page="https://github.com/dvl-tum/center-group",
        licence="none stated (dvl-tum/center-group has no licence file: no reuse terms are granted)",
    )
    for name, file_name, backbone, layout, attr, role in _FILES
)


@hookimpl
def bupose_register_heads(register: Callable[[HeadSpec], None]) -> None:
    register(HEAD)


@hookimpl
def bupose_register_weights(register: Callable[[WeightsSpec], None]) -> None:
    for spec in WEIGHTS:
        register(spec)
