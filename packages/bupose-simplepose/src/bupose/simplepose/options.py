"""SimplePose test-time options (torch-free): the official ``utils/config`` values as defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SimplePoseOptions"]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class SimplePoseOptions:
    """Declared test options of the ``simplepose`` head. Single-scale use as the author recommends
    (issue #14): ``scales=1 input_size=768 thre1=0.08 thre2=0.08``."""

    scales: tuple[float, ...] | None = field(
        default=None, metadata=_help("scale search (x input_size / image height); default 0.5,1,1.5,2,3")
    )
    flip: bool = field(default=True, metadata=_help("flip test (the official evaluation always flips)"))
    input_size: int | None = field(default=None, metadata=_help("boxsize: image height at scale 1 (default 512)"))
    amp: bool = field(default=False, metadata=_help("mixed precision (bf16 on CPU, fp16 on CUDA)"))
    thre1: float = field(default=0.1, metadata=_help("keypoint peak threshold"))
    thre2: float = field(default=0.1, metadata=_help("limb sample threshold"))
    connect_ration: float = field(default=0.8, metadata=_help("fraction of limb samples above thre2"))
    mid_num: int = field(default=20, metadata=_help("most samples along a limb"))
    len_rate: float = field(default=16.0, metadata=_help("a new limb may be at most len_rate x the person's longest"))
    connection_tole: float = field(default=0.7, metadata=_help("merge tolerance x the weaker person's minimum limb score"))
    offset_radius: int = field(default=2, metadata=_help("radius of the peak centroid window"))
    remove_recon: int = field(default=0, metadata=_help("> 0: the weaker holder of a contested joint loses it"))

    def __post_init__(self) -> None:
        if self.scales is not None and (not self.scales or any(float(s) <= 0 for s in self.scales)):
            raise ValueError(f"simplepose option scales: expected positive numbers, got {self.scales!r}")
        if self.input_size is not None and int(self.input_size) < 32:
            raise ValueError(f"simplepose option input_size: expected >= 32, got {self.input_size!r}")
        if self.mid_num < 1 or self.offset_radius < 0:
            raise ValueError("simplepose options mid_num must be >= 1 and offset_radius >= 0")

    @property
    def scale_search(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.scales) if self.scales is not None else (0.5, 1.0, 1.5, 2.0, 3.0)
