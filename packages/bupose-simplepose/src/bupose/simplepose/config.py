"""SimplePose constants: channel layout, limbs, flip orders, the 18 -> 17 COCO mapping, test defaults.

Torch-free, so the plugin module can declare outputs and options without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "CMU_KEYPOINTS",
    "COCO_FROM_CMU",
    "FLIP_HEAT_ORDER",
    "FLIP_LIMB_ORDER",
    "HOURGLASS_CHANNELS",
    "LIMBS",
    "NUM_KEYPOINTS",
    "NUM_LIMBS",
    "NUM_OUTPUTS",
    "TEST_DEFAULTS",
    "imhn_output_shapes",
]

CMU_KEYPOINTS: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
"""The 18 keypoint channels (30-47) in CMU order; the neck is the mean of the shoulders."""

LIMBS: tuple[tuple[int, int], ...] = (
    (1, 0), (1, 14), (1, 15), (1, 16), (1, 17), (0, 14), (0, 15), (14, 16), (15, 17), (1, 2), (2, 3),
    (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (0, 2),
    (0, 5), (2, 8), (8, 12), (5, 11), (11, 9), (16, 2), (17, 5), (8, 11),
)
"""The 30 limb channels (0-29): (from, to) CMU keypoint indices, in the official ``limbs_conn`` order."""

NUM_LIMBS = len(LIMBS)
NUM_KEYPOINTS = len(CMU_KEYPOINTS)
NUM_OUTPUTS = NUM_LIMBS + NUM_KEYPOINTS + 2
"""50 channels: 30 limbs, 18 keypoints, person mask (48), reverse keypoint (49)."""

MASK_CHANNEL = NUM_LIMBS + NUM_KEYPOINTS
REVERSE_CHANNEL = MASK_CHANNEL + 1

FLIP_LIMB_ORDER: tuple[int, ...] = (
    0, 2, 1, 4, 3, 6, 5, 8, 7, 12, 13, 14, 9, 10, 11, 18, 19, 20, 15, 16, 17, 22, 21, 25, 26, 23, 24,
    28, 27, 29,
)
"""``flip_paf_ord``: limb channel c of a mirrored output is limb FLIP_LIMB_ORDER[c] of the original."""

FLIP_HEAT_ORDER: tuple[int, ...] = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16, 18, 19)
"""``flip_heat_ord`` over the 20 channels 30-49 (18 keypoints, mask, reverse keypoint)."""

COCO_FROM_CMU: tuple[int, ...] = (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)
"""COCO-17 joint i is CMU joint COCO_FROM_CMU[i] (``dt_gt_mapping``; the neck is dropped)."""

HOURGLASS_CHANNELS: tuple[int, ...] = (256, 384, 512, 640, 768)
"""IMHN channels per scale (stride 4, 8, 16, 32, 64): 256 + 128 per downsampling."""

TEST_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "scale_search": (0.5, 1.0, 1.5, 2.0, 3.0),
        "boxsize": 512,
        "thre1": 0.1,
        "thre2": 0.1,
        "connect_ration": 0.8,
        "mid_num": 20,
        "len_rate": 16.0,
        "connection_tole": 0.7,
        "offset_radius": 2,
        "remove_recon": 0,
        "flip": True,
    }
)
"""The official ``utils/config`` test parameters. The author recommends ``scale_search=(1.0,)`` with
``boxsize=768`` and ``thre1 = thre2 = 0.08`` for single-scale use (issue #14)."""


def imhn_output_shapes(
    nstack: int = 4, channels: tuple[int, ...] = HOURGLASS_CHANNELS, pred_channels: int = NUM_OUTPUTS,
    feat_channels: int = 256,
) -> dict[str, tuple[int, int]]:
    """Declared IMHN outputs, name -> (channels, stride): per stack s and scale j,
    ``stack{s}_scale{j}`` (the SE features) and ``stack{s}_scale{j}_pred`` (the 1x1 predictions)."""
    out: dict[str, tuple[int, int]] = {}
    for s in range(nstack):
        for j in range(len(channels)):
            out[f"stack{s}_scale{j}"] = (feat_channels, 4 * 2**j)
            out[f"stack{s}_scale{j}_pred"] = (pred_channels, 4 * 2**j)
    return out
