"""Registration only: specs name their factories as strings, so listing plugins imports no torch."""

from __future__ import annotations

from collections.abc import Callable

from bupose.core import BackboneSpec, FeatureShape, HeadSpec, hookimpl


@hookimpl
def bupose_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    register(
        BackboneSpec(
            name="example_convnet",
            factory="bupose_example_head.model:ExampleConvNet",
            summary="tiny 3-layer conv net (example plugin)",
            outputs={"s4": FeatureShape(16, 4), "s8": FeatureShape(32, 8)},
            size_divisibility=8,  # three stride-2 convolutions
        )
    )


@hookimpl
def bupose_register_heads(register: Callable[[HeadSpec], None]) -> None:
    register(
        HeadSpec(
            name="example",
            factory="bupose_example_head.model:ExampleHeatmapHead",
            summary="heatmap head: keypoint candidates grouped by a registered grouper (example plugin)",
            codec="bupose_example_head.codec:ExampleHeatmapCodec",
            pipeline="bupose_example_head.pipeline:ExamplePipeline",
            options="bupose_example_head.options:ExampleOptions",
            grouper="single_person",
            input_spec="letterbox to a square input_size (default 64)",
            layouts=("coco17", "crowdpose14"),
        )
    )
