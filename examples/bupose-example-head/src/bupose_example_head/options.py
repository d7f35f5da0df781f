"""The example head's test-time options (``HeadSpec.options``); imports no torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExampleOptions:
    """Options of :class:`bupose_example_head.pipeline.ExamplePipeline`."""

    input_size: int | None = field(
        default=None,
        metadata={"help": "side of the square letterbox input (none: the trained size stored in the weights, else 64)"},
    )
    max_candidates: int = field(
        default=5, metadata={"help": "keypoint candidates kept per joint: its heatmap's best local maxima"}
    )
    candidate_threshold: float | None = field(
        default=None, metadata={"help": "drop candidates whose heatmap value is below this (none keeps them all)"}
    )

    def __post_init__(self) -> None:
        if self.input_size is not None and self.input_size < 8:
            raise ValueError(f"input_size must be >= 8, got {self.input_size}")
        if self.max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {self.max_candidates}")
