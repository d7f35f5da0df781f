"""GroupPose's test-time options: one dataclass, official defaults, no torch.

Defaults are the official val pipeline (``datasets/coco.py`` ``make_coco_transforms('val')``:
``RandomResize([800], max_size=1333)``; ``config/grouppose.py`` ``num_select = 50``). ``bupose run
--head grouppose --option KEY=VALUE`` reads these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["GroupPoseOptions"]


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class GroupPoseOptions:
    """Test-time options of the GroupPose pipeline (official values by default)."""

    input_size: int | None = _opt(
        None, "short side of the resized image (none: the training size stored in the weights, else 800)"
    )
    max_size: int | None = _opt(
        None, "longest side after resizing (none: 1333 for 800, scaled with input_size otherwise)"
    )
    batch_mode: Literal["independent", "pad"] = _opt(
        "independent",
        "independent: each image gives the same result whatever the batch (images grouped by size); "
        "pad: one batch padded bottom-right to the largest image, as the official eval (batch 2) does",
    )
    num_select: int = _opt(50, "PostProcess: top-k over the (query, class) scores (official 50)")
    amp: bool = _opt(False, "network under autocast (fp16 on CUDA, bf16 on CPUs with native bf16); deformable attention stays fp32")
    flip: bool = _opt(False, "not available: GroupPose has no flip test (the official pipeline has none)")
    scales: tuple[float, ...] = _opt((1.0,), "not available: GroupPose is single scale (only 1)")

    def __post_init__(self) -> None:
        if self.flip:
            raise ValueError(
                "flip: GroupPose has no flip test (the official val pipeline runs the set predictor once, "
                "without flipping); drop --flip / flip=true"
            )
        if tuple(float(s) for s in self.scales) != (1.0,):
            raise ValueError(
                f"scales: GroupPose has no multi-scale test (the official val pipeline is single scale); "
                f"got {self.scales}, only 1 is accepted"
            )
        if self.input_size is not None and self.input_size <= 0:
            raise ValueError(f"input_size must be positive, got {self.input_size}")
        if self.max_size is not None and self.max_size <= 0:
            raise ValueError(f"max_size must be positive, got {self.max_size}")
        if self.batch_mode not in ("independent", "pad"):
            raise ValueError(f"batch_mode must be independent or pad, got {self.batch_mode!r}")
        if not self.num_select >= 1:
            raise ValueError(f"num_select must be >= 1, got {self.num_select}")
