"""bupose plugin module of bupose-simplepose: backbone ``imhn``, head ``simplepose``, grouper
``simplepose_limbs`` and the official checkpoint.

Imports nothing heavy: every factory is a lazy ``module:attr`` string.
"""

from __future__ import annotations

from collections.abc import Callable

from bupose.core import BackboneSpec, FeatureShape, GrouperSpec, HeadSpec, WeightsSpec, hookimpl

from .config import imhn_output_shapes

BACKBONE = BackboneSpec(
    name="imhn",
    factory="bupose.simplepose.model:imhn",
    summary="SimplePose improved multi-scale hourglass: stem + 4 stacks x 5 scales with SE features, "
    "per-stack 50-map predictions and inter-stack merges (BGR [0,1] input, no mean/std)",
    outputs={k: FeatureShape(c, s) for k, (c, s) in imhn_output_shapes().items()},
)

HEAD = HeadSpec(
    name="simplepose",
    factory="bupose.simplepose.model:SimplePoseHead",
    summary="SimplePose (AAAI 2020): 30 limb heatmaps + 18 keypoint maps + person mask + reverse keypoint; "
    "on imhn the official network, elsewhere a single-stack stride-4 predictor",
    codec="bupose.simplepose.codec:SimplePoseCodec",
    pipeline="bupose.simplepose.pipeline:SimplePosePipeline",
    input_spec="scale search 0.5/1/1.5/2/3 x 512 / image height (caps 2600 x 3800), cubic resize, "
    "pad right/bottom with 128 to a multiple of 64, BGR / 255, flip always",
    grouper="simplepose_limbs",
    layouts=("coco17",),
    options="bupose.simplepose.options:SimplePoseOptions",
    candidate_fields=("limb_heatmaps",),
)

GROUPER = GrouperSpec(
    name="simplepose_limbs",
    factory="bupose.simplepose.grouper:SimplePoseLimbGrouper",
    summary="SimplePose limb assembly: limb-heatmap pair scoring, greedy one-to-one connections, person "
    "assembly with merging; CMU-18 candidates + 30 limb maps -> COCO-17 (vectorised, official results)",
    requires=("limb_heatmaps",),
    layouts=("coco17",),
)

WEIGHTS = WeightsSpec(
    name="simplepose_imhn_coco",
    factory="bupose.simplepose.convert:OFFICIAL",
    summary="official SimplePose IMHN epoch 52 (COCO); licence: none stated (the repository has no "
    "licence file)",
    head="simplepose",
    backbone="imhn",
    layout="coco17",
    file_names=("PoseNet_52_epoch.pth",),
    source="jialee93/Improved-Body-Parts README (Baidu with optimizer state / Google Drive weights only); "
    "no licence file in the repository",
    role="model",
    source_page="https://github.com/jialee93/Improved-Body-Parts",
    licence="none stated (the repository has no licence file)",
    paper_ap=(("COCO test-dev2017, focal L2; scales not stated (config default: 5 scales + flip)", 68.5),),
)


@hookimpl
def bupose_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    register(BACKBONE)


@hookimpl
def bupose_register_heads(register: Callable[[HeadSpec], None]) -> None:
    register(HEAD)


@hookimpl
def bupose_register_groupers(register: Callable[[GrouperSpec], None]) -> None:
    register(GROUPER)


@hookimpl
def bupose_register_weights(register: Callable[[WeightsSpec], None]) -> None:
    register(WEIGHTS)
