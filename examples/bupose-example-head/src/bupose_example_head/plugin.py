"""Registration only: specs name their factories as strings, so listing plugins imports no torch."""

from __future__ import annotations

from collections.abc import Callable

from bupose.core import BackboneSpec, DecoderSpec, FeatureShape, HeadSpec, hookimpl


@hookimpl
def bupose_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    register(
        BackboneSpec(
            name="example_convnet",
            factory="bupose_example_head.model:ExampleConvNet",
            summary="tiny 3-layer conv net (example plugin)",
            outputs={"s4": FeatureShape(16, 4), "s8": FeatureShape(32, 8)},
        )
    )


@hookimpl
def bupose_register_heads(register: Callable[[HeadSpec], None]) -> None:
    register(
        HeadSpec(
            name="example",
            factory="bupose_example_head.model:ExampleHeatmapHead",
            summary="single-person heatmap head (example plugin)",
            codec="bupose_example_head.codec:ExampleHeatmapCodec",
            decoder="example_argmax",
            pipeline="bupose_example_head.pipeline:ExamplePipeline",
            input_spec="letterbox to 64x64",
            layouts=("coco17", "crowdpose14"),
        )
    )


@hookimpl
def bupose_register_decoders(register: Callable[[DecoderSpec], None]) -> None:
    register(
        DecoderSpec(
            name="example_argmax",
            factory="bupose_example_head.codec:ExampleHeatmapCodec",
            summary="per-joint argmax with sub-pixel refinement (example plugin)",
        )
    )
