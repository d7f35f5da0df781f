"""bupose plugin module of bupose-logocap: the ``logocap`` head (codec, pipeline, test options)
and the official checkpoints.

Imports nothing heavy: every factory is a lazy ``module:attr`` string.
"""

from __future__ import annotations

from collections.abc import Callable

from bupose.core import HeadSpec, WeightsSpec, hookimpl

SOURCE = (
    "cherubicXN/logocap GitHub release 'checkpoints', asset logocap.tar.gz (weights/download.sh) -> "
    "weights/logocap/{file}; licence: unknown - the repository has no licence file, so no reuse "
    "terms are granted (ask the authors before redistributing)"
)

HEAD = HeadSpec(
    name="logocap",
    factory="bupose.logocap.model:LogoCapHead",
    summary="LOGO-CAP: centre-offset initial poses refined by local (KAM) and global keypoint adaptation (CVPR 2022)",
    codec="bupose.logocap.codec:LogoCapCodec",
    pipeline="bupose.logocap.pipeline:LogoCapPipeline",
    options="bupose.logocap.options:LogoCapOptions",
    input_spec="short side -> input size (512 W32 / 640 W48), long side to a multiple of 64, centred affine warp",
    layouts=("coco17",),
)

_MODEL_WEIGHTS = (
    ("logocap_hrnetw32_coco", "logocap-hrnet-w32-coco.pth.tar", "hrnet_w32", "W32_COCO"),
    ("logocap_hrnetw48_coco", "logocap-hrnet-w48-coco.pth.tar", "hrnet_w48", "W48_COCO"),
)

WEIGHTS: tuple[WeightsSpec, ...] = tuple(
    WeightsSpec(
        name=name,
        factory=f"bupose.logocap.convert:{attr}",
        summary=f"official LOGO-CAP {backbone} COCO model (licence unknown: no licence file upstream)",
        head="logocap",
        backbone=backbone,
        layout="coco17",
        file_names=(file_name,),
        source=SOURCE.format(file=file_name),
        role="model",
        source_page="https://github.com/cherubicXN/logocap",
        licence="none stated (cherubicXN/logocap has no licence file)",
        # the README has no results table; the paper's numbers are not recorded in shared/reference
    )
    for name, file_name, backbone, attr in _MODEL_WEIGHTS
)


@hookimpl
def bupose_register_heads(register: Callable[[HeadSpec], None]) -> None:
    register(HEAD)


@hookimpl
def bupose_register_weights(register: Callable[[WeightsSpec], None]) -> None:
    for spec in WEIGHTS:
        register(spec)
