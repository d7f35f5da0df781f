"""DEKR's test-time options (``HeadSpec.options``): one dataclass, official defaults, no torch.

``bupose run --head dekr --option KEY=VALUE`` and ``bupose list heads --verbose`` read these
fields; :class:`~bupose.dekr.pipeline.DEKRPipeline` is built from an instance. Defaults are the
official COCO test config (HRNet/DEKR ``experiments/coco/*.yaml``: ``TEST.*``,
``DATASET.MAX_NUM_PEOPLE``, ``DATASET.SIGMA``); the options whose official value differs per dataset
default to ``None`` = the layout's official value (:attr:`DEKROptions.layout_defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

__all__ = ["DECODE_OPTION_NAMES", "DEKROptions"]


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DEKROptions:
    """Test-time options of the DEKR pipeline (official values by default)."""

    layout_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "coco17": {"nms_num_thre": 8, "decrease": 0.9},
        "crowdpose14": {"nms_num_thre": 7, "decrease": 0.8},
    }
    """The official per-dataset values of the options that default to ``None``."""

    # -- input and test-time augmentation
    flip: bool = _opt(True, "flip test: also run the horizontally flipped input (shifted 3 px) and average")
    scales: tuple[float, ...] = _opt(
        (1.0,), "test scales, must contain 1 (official multi-scale: 0.5,1,2 with nms_thre 0.15)"
    )
    input_size: int | None = _opt(
        None, "short side at scale 1 (none: the trained size stored in the weights, else 640 for W48, 512)"
    )
    size_multiple: int = _opt(
        64, "the long side is rounded to a multiple of this (combined with the backbone's size divisibility)"
    )
    amp: bool = _opt(
        False,
        "run the network under autocast (float16 on CUDA; bfloat16 on CPUs with native bf16, else float32 with "
        "a warning); not pose-exact: on the golden W32 case bf16 moved matched joints by a median 2 px (max 36) "
        "and found 30 people where float32 found 27 (bench/bench_amp_accuracy.py)",
    )
    batch_mode: Literal["group", "pad"] = _opt(
        "group", "group: one network call per input size (exact); pad: one call per scale on padded inputs"
    )
    rescore_weights: Path | None = field(
        default=None,
        metadata={"help": "rescoring-net file (final_rescore_*_kpt.pth): person score = predicted OKS x pose score"},
    )
    # -- decoding (official TEST.* names in lower case)
    keypoint_threshold: float = _opt(0.01, "centre score a person needs (TEST.KEYPOINT_THRESHOLD)")
    max_num_people: int = _opt(30, "centres kept per scale and people kept after pose NMS (DATASET.MAX_NUM_PEOPLE)")
    pool_threshold1: float = _opt(300, "centre NMS uses a 7x7 max-pool above this mean map size (TEST.POOL_THRESHOLD1)")
    pool_threshold2: float = _opt(200, "centre NMS uses 5x5 above this mean map size, else 3x3 (TEST.POOL_THRESHOLD2)")
    decrease: float | None = _opt(None, "score factor of the poses from scales other than 1 (TEST.DECREASE)")
    nms_thre: float = _opt(0.05, "pose NMS: joints closer than this times sqrt(box area) coincide (TEST.NMS_THRE)")
    nms_num_thre: int | None = _opt(
        None, "pose NMS: two poses overlap when more than this many joints coincide (TEST.NMS_NUM_THRE)"
    )
    match_hmp: bool = _opt(
        False, "absorb joints to heatmap peaks and refine them with a Gaussian fit (TEST.MATCH_HMP)"
    )
    adjust_threshold: float = _opt(0.05, "MATCH_HMP: joints above this score get the Gaussian refinement (TEST.ADJUST_THRESHOLD)")
    max_absorb_distance: float = _opt(75.0, "MATCH_HMP: farthest heatmap peak a joint moves to, in px (TEST.MAX_ABSORB_DISTANCE)")
    gaussian_kernel: int = _opt(6, "MATCH_HMP: half width of the Gaussian-fit window, in px (TEST.GUASSIAN_KERNEL)")
    sigma: float = _opt(2.0, "MATCH_HMP: initial sigma of the Gaussian fit (DATASET.SIGMA)")

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
        if self.max_num_people < 1:
            raise ValueError(f"max_num_people must be >= 1, got {self.max_num_people}")

    def decode_options(self) -> dict[str, Any]:
        """The decoder's options (``None`` ones left out, so the decoder applies the layout's value)."""
        return {n: getattr(self, n) for n in DECODE_OPTION_NAMES if getattr(self, n) is not None}


_PIPELINE_FIELDS = {"flip", "scales", "input_size", "size_multiple", "amp", "batch_mode", "rescore_weights"}
DECODE_OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(DEKROptions) if f.name not in _PIPELINE_FIELDS)
"""The options that go to :class:`~bupose.dekr.decode.DEKRDecoder` (all but the pipeline's own)."""
