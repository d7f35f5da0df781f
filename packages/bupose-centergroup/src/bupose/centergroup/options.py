"""CenterGroup's test-time options: one dataclass, official defaults, no torch.

Defaults are the official ``test_cfg`` / ``heatmap_cfg`` of ``configs/centergroup/base.py``
(dvl-tum/center-group): flip test on, single scale, ``conf_thresh`` 0.5, last transformer head,
``adjust`` on; NMS kernels 5 (keypoints) / 17 (centres), top-30, ``min_score`` 0.005,
``min_top_k_per_type`` 3. ``bupose run --head centergroup --option KEY=VALUE`` reads these names;
``--flip/--no-flip`` and ``--scales`` are short forms (``--scales 0.5,1,2`` = the official
``--multi-scale``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CenterGroupOptions"]


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class CenterGroupOptions:
    """Test-time options of the CenterGroup pipeline (official values by default)."""

    flip: bool = _opt(True, "flip test: both the image and its mirror run node extraction + grouping, merged per person")
    scales: tuple[float, ...] = _opt(
        (1.0,), "test scales, must contain 1 (official --multi-scale: 0.5,1,2; heatmaps averaged, features 0.2/0.6/0.2)"
    )
    input_size: int | None = _opt(
        None, "short side at scale 1 (none: the trained size stored in the weights, else 640 for W48, 512)"
    )
    size_multiple: int = _opt(64, "the long side is ceiled to a multiple of this (combined with the backbone's divisibility)")
    amp: bool = _opt(False, "network under autocast (fp16 on CUDA, bf16 on CPUs with native bf16); grouping decode in float32")
    adjust: bool = _opt(True, "move each joint 0.25 px towards its higher heatmap neighbour, then +0.5 (test_cfg.adjust)")
    conf_thresh: float = _opt(0.5, "pose score: mean visibility of joints above this (or in the top 5) when personness > it")
    tformer_layer: int = _opt(-1, "which of the 4 prediction heads decodes (-1: the last, official)")
    max_num_people: int = _opt(30, "centre candidates (top-k of the centre heatmap after 17x17 NMS)")
    top_k_per_type: int = _opt(30, "keypoint candidates per joint type (after 5x5 NMS)")
    min_score: float = _opt(0.005, "candidates below this score are dropped unless among the first min_top_k")
    min_top_k: int = _opt(3, "the first this-many candidates of each type are always kept (min_top_k_per_type)")

    def __post_init__(self) -> None:
        scales = tuple(float(s) for s in self.scales)
        if not scales or 1.0 not in scales:
            raise ValueError(f"scales must contain 1.0, got {self.scales}")
        if any(s <= 0 for s in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct and positive, got {self.scales}")
        if self.input_size is not None and self.input_size <= 0:
            raise ValueError(f"input_size must be positive, got {self.input_size}")
        if self.size_multiple < 1:
            raise ValueError(f"size_multiple must be >= 1, got {self.size_multiple}")
        if not -4 <= self.tformer_layer <= 3:
            raise ValueError(f"tformer_layer must be in -4..3 (4 prediction heads), got {self.tformer_layer}")
        for name in ("max_num_people", "top_k_per_type"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_top_k < 0:
            raise ValueError(f"min_top_k must be >= 0, got {self.min_top_k}")
