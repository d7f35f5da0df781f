"""DEKR training targets, with the official generators' semantics (quirks included).

The flow of the official ``CocoKeypoints/CrowdPoseKeypoints.__getitem__``:
:func:`get_mask` (ignore mask in image pixels) -> keep ``iscrowd == 0 or num_keypoints > 0`` ->
:func:`get_joints` (persons as (J+1, 3) rows, centre last; the official ``area``) -> an affine to the
output resolution -> :func:`encode_targets` (``HeatmapGenerator`` + ``OffsetGenerator``).
:func:`targets_from_annotations` runs the whole flow for the COCO annotations of one image;
:class:`bupose.dekr.codec.DEKRCodec` uses the same functions on augmented samples.

Official rules kept on purpose (README behaviour 11):

- ``area`` = (max x − min x)² + (max y − min y)² over all J+1 rows of the person array **before** the
  centre is filled, in image pixels (the zero centre row and unlabelled joints take part), then
  multiplied by the input affine's scale product;
- centre = sum of all joint coordinates / number of joints with v > 0; COCO persons whose annotation
  ``area`` < 32² get centre v = 0; a person without labelled joints gets centre (0, 0) with v = 1;
- heatmap sigma = ``sigma`` for channel index < 17, else ``center_sigma`` (so CrowdPose's centre,
  channel 14, uses ``sigma``);
- offsets in [int(c)−r, int(c)+r) around the truncated centre; a pixel already holding an offset for
  that joint is overwritten only by a person whose area is ≤ the area stored at that pixel.

The generators are :mod:`bupose.core.algorithms.targets` functions with DEKR's values (per-channel
sigma by the index rule, HRNet window, background weight 0.1, radius 4, the diagonal-squared area
over all rows, the sum-over-visible centre); mask warping and point mapping are
:mod:`bupose.core.algorithms.geometry`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bupose.core.algorithms.geometry import apply_affine, warp_mask
from bupose.core.algorithms.targets import (
    displacement_targets,
    gaussian_heatmaps,
    instance_area,
    instance_centers,
)

__all__ = [
    "SIGMA_RULE_INDEX",
    "encode_targets",
    "get_joints",
    "get_mask",
    "heatmap_targets",
    "offset_targets",
    "person_area",
    "targets_from_annotations",
    "warp_mask",
]

SIGMA_RULE_INDEX = 17
"""The official sigma rule: channels with index < 17 use SIGMA, the others CENTER_SIGMA."""


def person_area(joints: np.ndarray) -> np.ndarray:
    """The official ``cal_area_2_torch``: (max−min)² of x plus (max−min)² of y over all rows.

    ``joints`` (N, K, ≥2) -> (N,) float64.
    """
    return instance_area(joints, "diagonal_squared", visible_only=False)


def get_mask(annotations: Sequence[Mapping[str, Any]], height: int, width: int, kind: str = "coco") -> np.ndarray:
    """Valid-pixel mask (H, W) bool in image pixels: False under crowd regions and under the
    segmentation of persons without keypoints (COCO); all True for CrowdPose."""
    m = np.zeros((height, width))
    if kind == "crowdpose":
        return m < 0.5
    if kind != "coco":
        raise ValueError(f"get_mask: kind must be 'coco' or 'crowdpose', got {kind!r}")
    from pycocotools import mask as mask_utils

    for i, obj in enumerate(annotations):
        seg = obj.get("segmentation")
        if obj.get("iscrowd"):
            if not seg:
                raise ValueError(f"annotation {i}: a crowd annotation needs a 'segmentation' (RLE)")
            rle = mask_utils.frPyObjects(seg, height, width)
            m += mask_utils.decode(rle)
        elif obj.get("num_keypoints", 0) == 0 and seg:
            for rle in mask_utils.frPyObjects(seg, height, width):
                m += mask_utils.decode(rle)
    return m < 0.5


def get_joints(
    annotations: Sequence[Mapping[str, Any]], num_joints: int, kind: str = "coco", min_center_area: float = 32**2
) -> tuple[np.ndarray, np.ndarray]:
    """Persons (N, J+1, 3) float64 in image pixels (centre row last) and the official ``area`` (N,).

    ``kind="coco"`` applies the small-person rule (annotation ``area`` < ``min_center_area`` ->
    centre v = 0); ``"crowdpose"`` has none.
    """
    if kind not in ("coco", "crowdpose"):
        raise ValueError(f"get_joints: kind must be 'coco' or 'crowdpose', got {kind!r}")
    n = len(annotations)
    joints = np.zeros((n, num_joints + 1, 3))
    small = np.zeros((n,), dtype=bool)
    for i, obj in enumerate(annotations):
        kps = np.asarray(obj.get("keypoints", []), dtype=np.float64)
        if kps.size != num_joints * 3:
            raise ValueError(
                f"annotation {i}: 'keypoints' has {kps.size} values, expected {num_joints * 3} "
                f"({num_joints} joints x (x, y, v))"
            )
        joints[i, :num_joints] = kps.reshape(num_joints, 3)
        if kind == "coco":
            if "area" not in obj:
                raise ValueError(f"annotation {i}: COCO annotations need 'area'")
            small[i] = obj["area"] < min_center_area
    area = person_area(joints)  # before the centre row is filled (official)
    centre, _ = instance_centers(joints[:, :-1], "sum_over_visible", empty=(0.0, 0.0))
    joints[:, -1, :2] = np.where(small[:, None], 0.0, centre)
    joints[:, -1, 2] = np.where(small, 0.0, 1.0)
    return joints, area


def heatmap_targets(
    joints: np.ndarray,
    output_size: int | tuple[int, int],
    sigma: float = 2.0,
    center_sigma: float = 4.0,
    bg_weight: float = 0.1,
    sigma_rule_index: int = SIGMA_RULE_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """The official ``HeatmapGenerator``: (K, H, W) unnormalised Gaussians (peak 1, max over people)
    and the (K, H, W) weight (1 inside any Gaussian window, ``bg_weight`` elsewhere).

    ``joints`` (N, K, 3) in output pixels; rows with v > 0 inside the map are drawn on integer pixels
    of [floor(x − 3σ − 1), ceil(x + 3σ + 2)).
    """
    k = np.shape(joints)[1]
    sigmas = [sigma if idx < sigma_rule_index else center_sigma for idx in range(k)]
    return gaussian_heatmaps(joints, output_size, sigmas, bg_weight=bg_weight, truncate=3.0)


def offset_targets(
    joints: np.ndarray, area: np.ndarray, output_size: int | tuple[int, int], radius: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """The official ``OffsetGenerator``: (2J, H, W) offsets (x_j, y_j) = pixel − joint and weights
    1/sqrt(area), written in the (2r)x(2r) window at the truncated centre of each person.

    ``joints`` (N, J+1, 3) in output pixels (centre last); ``area`` (N,) the official area.
    """
    joints = np.asarray(joints, dtype=np.float64)
    area = np.asarray(area, dtype=np.float64).reshape(-1)
    if area.shape[0] != joints.shape[0]:
        raise ValueError(f"offset_targets: {joints.shape[0]} persons but {area.shape[0]} areas")
    return displacement_targets(joints[:, :-1], joints[:, -1], area, output_size, radius)


def encode_targets(
    joints: np.ndarray,
    area: np.ndarray,
    mask: np.ndarray,
    output_size: int | tuple[int, int],
    *,
    sigma: float = 2.0,
    center_sigma: float = 4.0,
    bg_weight: float = 0.1,
    radius: int = 4,
    sigma_rule_index: int = SIGMA_RULE_INDEX,
) -> dict[str, np.ndarray]:
    """All DEKR targets from persons at output resolution: ``heatmap`` (J+1,H,W), ``heatmap_weight``
    (= mask·weight), ``offset`` (2J,H,W), ``offset_weight`` (2J,H,W), float32 arrays."""
    joints = np.asarray(joints, dtype=np.float64).reshape(-1, *np.shape(joints)[1:])
    heatmap, ignored = heatmap_targets(joints, output_size, sigma, center_sigma, bg_weight, sigma_rule_index)
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != heatmap.shape[1:]:
        raise ValueError(f"encode_targets: mask is {mask.shape}, the output maps are {heatmap.shape[1:]}")
    offset, offset_weight = offset_targets(joints, area, output_size, radius)
    return {
        "heatmap": heatmap,
        "heatmap_weight": (mask[None] * ignored).astype(np.float32),
        "offset": offset,
        "offset_weight": offset_weight,
    }


def targets_from_annotations(
    annotations: Sequence[Mapping[str, Any]],
    image_hw: tuple[int, int],
    num_joints: int,
    *,
    kind: str = "coco",
    output_size: int,
    output_matrix: np.ndarray | None = None,
    area_scale: float = 1.0,
    sigma: float = 2.0,
    center_sigma: float = 4.0,
    bg_weight: float = 0.1,
    radius: int = 4,
) -> dict[str, np.ndarray]:
    """DEKR targets for the COCO-format annotations of one image, as the official dataset makes them.

    ``output_matrix`` (2, 3) maps image pixels to output-map pixels (default: scale
    output_size / max(image size), no rotation); ``area_scale`` is the input affine's scale product
    (the official ``final_scale``). Returns the targets of :func:`encode_targets` plus the
    intermediates ``joints_image``, ``area_image``, ``mask_image``, ``joints_output``,
    ``area_output``, ``mask_output``.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    mask_image = get_mask(annotations, h, w, kind)
    kept = [obj for obj in annotations if obj.get("iscrowd", 0) == 0 or obj.get("num_keypoints", 0) > 0]
    joints_image, area_image = get_joints(kept, num_joints, kind)
    if output_matrix is None:
        s = output_size / max(h, w)
        output_matrix = np.array([[s, 0.0, 0.0], [0.0, s, 0.0]])
    mat = np.asarray(output_matrix, dtype=np.float64)
    mask_output = warp_mask(mask_image, mat, output_size)
    joints_output = joints_image.copy()
    joints_output[:, :, :2] = apply_affine(joints_image[:, :, :2], mat)
    area_output = area_image * area_scale
    targets = encode_targets(
        joints_output, area_output, mask_output, output_size,
        sigma=sigma, center_sigma=center_sigma, bg_weight=bg_weight, radius=radius,
    )
    targets.update(
        joints_image=joints_image,
        area_image=area_image,
        mask_image=mask_image,
        joints_output=joints_output,
        area_output=area_output,
        mask_output=mask_output,
    )
    return targets
