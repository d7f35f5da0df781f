"""LOGO-CAP's test-time options: one dataclass, official defaults, no torch.

Defaults are the official COCO test config (cherubicXN/logocap ``experiments/logocap-hrnet-w32-coco.yaml``
+ ``logocap/config/default.py``: ``MODEL.DECODER.*``, ``TEST.INSTANCE_NMS.*``,
``TEST.ADAPTATION_LEVEL``, ``DATASET.MAX_NUM_PEOPLE``). ``bupose run --head logocap --option
KEY=VALUE`` reads these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["LogoCapOptions"]


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class LogoCapOptions:
    """Test-time options of the LOGO-CAP pipeline (official values by default)."""

    flip: bool = _opt(
        True, "flip test without pixel shift (official: always on; off is a bupose addition whose results differ)"
    )
    scales: tuple[float, ...] = _opt((1.0,), "test scales: only 1 (the official pipeline is single scale)")
    input_size: int | None = _opt(
        None, "short side of the network input (none: the trained size stored in the weights, else 640 for W48, 512)"
    )
    size_multiple: int = _opt(64, "the long side is rounded to a multiple of this")
    amp: bool = _opt(False, "network and KAM under autocast (fp16 on CUDA, bf16 on CPUs with native bf16)")
    adaptation: Literal["full", "partial", "none"] = _opt(
        "full", "TEST.ADAPTATION_LEVEL: full (local KAM + global), partial (KAM argmax), none (centre-offset poses)"
    )
    max_num_people: int = _opt(30, "centres taken by the centre NMS and poses kept (MODEL.DECODER.TOPK_CENTER)")
    center_threshold: float = _opt(0.01, "centres with at least this score are kept (at least one)")
    pose_nms: bool = _opt(True, "pose NMS ranked by pose score (TEST.INSTANCE_NMS.ACTIVATED)")
    nms_thre: float = _opt(
        0.05, "pose NMS: joints closer than this times sqrt(w²+h²) coincide (TEST.INSTANCE_NMS.SCORE_THRESHOLD)"
    )
    nms_num_thre: int = _opt(8, "pose NMS: poses overlap when more than this many joints coincide (INSTANCE_NMS.NUM_JOINTS)")
    kem_radius: int = _opt(5, "local KEM grid half size: (2k+1)² candidates per joint (MODEL.DECODER.KSIZE)")
    global_radius: int = _opt(48, "global window half size, input pixels (MODEL.DECODER.GLOBAL_HM_SIZE / 2)")
    global_sigma: float = _opt(16.0, "sigma of the global window's Gaussian prior, input pixels (MODEL.DECODER.SIGMA)")

    def __post_init__(self) -> None:
        if tuple(float(s) for s in self.scales) != (1.0,):
            raise ValueError(f"scales: only single-scale (1.0,) inference exists, got {self.scales}")
        if self.adaptation not in ("full", "partial", "none"):
            raise ValueError(f"adaptation must be full, partial or none, got {self.adaptation!r}")
        if self.input_size is not None and self.input_size <= 0:
            raise ValueError(f"input_size must be positive, got {self.input_size}")
        if self.size_multiple < 1:
            raise ValueError(f"size_multiple must be >= 1, got {self.size_multiple}")
        if self.max_num_people < 1:
            raise ValueError(f"max_num_people must be >= 1, got {self.max_num_people}")
        if self.kem_radius < 0 or self.global_radius < 0:
            raise ValueError(f"kem_radius and global_radius must be >= 0, got {self.kem_radius}, {self.global_radius}")

    def decode_options(self) -> dict[str, Any]:
        """The :class:`~bupose.logocap.decode.LogoCapDecoder` keyword arguments."""
        return {
            "adaptation": self.adaptation,
            "max_people": self.max_num_people,
            "center_threshold": self.center_threshold,
            "nms_ratio": self.nms_thre,
            "nms_joints": self.nms_num_thre,
            "kem_radius": self.kem_radius,
            "global_radius": self.global_radius,
            "global_sigma": self.global_sigma,
            "pose_nms": self.pose_nms,
        }
