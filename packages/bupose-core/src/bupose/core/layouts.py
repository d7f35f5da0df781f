"""Keypoint layouts: core's ``coco17`` (also OCHuman) and ``crowdpose14``, and ``get_layout``."""

from __future__ import annotations

__all__ = ["COCO17", "CROWDPOSE14", "LAYOUT_ALIASES", "get_layout"]

from .specs import LayoutSpec

_LEFT = (255, 128, 0)
_RIGHT = (51, 153, 255)
_MIDDLE = (0, 200, 0)


def _colour(names: tuple[str, ...], a: int, b: int) -> tuple[int, int, int]:
    left = names[a].startswith("left") or names[b].startswith("left")
    right = names[a].startswith("right") or names[b].startswith("right")
    if left and not right:
        return _LEFT
    if right and not left:
        return _RIGHT
    return _MIDDLE


COCO17_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO17_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

COCO17 = LayoutSpec(
    name="coco17",
    summary="COCO person keypoints (17 joints); also OCHuman",
    keypoints=COCO17_KEYPOINTS,
    flip_index=(0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15),
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
            0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089),  # fmt: skip
    skeleton=COCO17_SKELETON,
    colors=tuple(_colour(COCO17_KEYPOINTS, a, b) for a, b in COCO17_SKELETON),
)

CROWDPOSE14_KEYPOINTS = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "top_head", "neck",
)  # fmt: skip
CROWDPOSE14_SKELETON = (
    (12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7), (6, 7),
    (6, 8), (8, 10), (7, 9), (9, 11),
)  # fmt: skip

CROWDPOSE14 = LayoutSpec(
    name="crowdpose14",
    summary="CrowdPose keypoints (14 joints)",
    keypoints=CROWDPOSE14_KEYPOINTS,
    flip_index=(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13),
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
            0.087, 0.087, 0.089, 0.089, 0.079, 0.079),  # fmt: skip
    skeleton=CROWDPOSE14_SKELETON,
    colors=tuple(_colour(CROWDPOSE14_KEYPOINTS, a, b) for a, b in CROWDPOSE14_SKELETON),
)


LAYOUT_ALIASES = {"ochuman": "coco17", "coco": "coco17", "crowdpose": "crowdpose14"}
"""Dataset names accepted where a layout name is expected."""


def get_layout(layout: str | LayoutSpec) -> LayoutSpec:
    """A layout by name (or alias such as ``ochuman``), or the spec itself.

    Core's own layouts resolve without loading plugins; other names go through the registry.
    """
    if isinstance(layout, LayoutSpec):
        return layout
    name = LAYOUT_ALIASES.get(layout, layout)
    builtin = {COCO17.name: COCO17, CROWDPOSE14.name: CROWDPOSE14}
    if name in builtin:
        return builtin[name]
    from .plugins import get_registry

    spec = get_registry().get("layouts", name)
    assert isinstance(spec, LayoutSpec)
    return spec
