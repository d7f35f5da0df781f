"""DEKRCodec: training targets from augmented samples (encode) and poses from outputs (decode).

``encode`` turns one augmented sample into the official DEKR targets with the functions of
:mod:`bupose.dekr.targets` (the same code the golden target fixture checks); ``decode`` delegates to
:class:`bupose.dekr.decode.DEKRDecoder`. Batching the targets is plain ``default_collate`` of the
dict: every field has a fixed shape for a given input size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bupose.core.layouts import get_layout
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec

from .targets import SIGMA_RULE_INDEX, encode_targets, person_area

__all__ = ["TRAIN_DEFAULTS", "DEKRCodec"]

TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_schedule": "multistep",
    "lr_milestones": [90 / 140, 120 / 140],
    "lr_factor": 0.1,
}
"""The official COCO schedule (Adam 1e-3, x0.1 at epochs 90 and 120 of 140) as fractions of the run."""

_KIND_BY_LAYOUT = {"coco17": "coco", "crowdpose14": "crowdpose"}



class DEKRCodec:
    """Encode augmented samples into DEKR targets; decode network outputs into poses.

    ``input_size`` is the square training input S (official 512 for W32, 640 for W48); targets are
    at ``S // stride``. Options (official defaults): ``sigma`` 2, ``center_sigma`` 4, ``bg_weight``
    0.1, ``offset_radius`` 4, ``min_center_area`` 32² (COCO rule: persons with a smaller ``areas``
    get no centre; CrowdPose has no such rule), ``stride`` 4; ``decode_options`` go to
    :class:`~bupose.dekr.decode.DEKRDecoder`.

    Sample fields (as ``bupose.core.data.transforms`` makes them): ``keypoints`` (N, J or J+1, 3)
    in input pixels (v > 0 = labelled; a J+1-th row is taken as the official centre);
    ``keypoints_at`` ``{output_size: (N, ·, 3)}`` the joints at target resolution exactly as the
    official transform makes them (used when present, else ``keypoints / stride``); ``areas`` (N,)
    annotation areas times the input affine's scale product; ``matrix`` (2, 3) original -> input
    pixels and ``flipped``; optional ``iscrowd`` and ``num_keypoints`` (N,) (crowd entries without
    keypoints are dropped as officially); ``masks`` ``{output_size: (s, s) float32, 1 = valid}`` (all
    ones when absent).

    The official rules written in image pixels (the offset-weight area over the J joints plus the
    zero centre row, the 32² small-person test on the annotation area, the image-origin centre of a
    person without labelled joints) are evaluated in image pixels through ``matrix``; without it
    they are evaluated in the input frame (identical for an identity or pure-scaling augmentation).
    """

    train_defaults: Mapping[str, Any] = TRAIN_DEFAULTS

    def __init__(
        self,
        layout: str | LayoutSpec = "coco17",
        input_size: int = 512,
        *,
        stride: int = 4,
        sigma: float = 2.0,
        center_sigma: float = 4.0,
        bg_weight: float = 0.1,
        offset_radius: int = 4,
        min_center_area: float | None = None,
        sigma_rule_index: int = SIGMA_RULE_INDEX,
        decode_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.layout = get_layout(layout)
        if isinstance(input_size, (tuple, list)):
            if len(set(input_size)) != 1:
                raise ValueError(f"DEKRCodec: the training input must be square, got {input_size}")
            input_size = int(input_size[0])
        if input_size % stride:
            raise ValueError(f"DEKRCodec: input_size {input_size} is not a multiple of the stride {stride}")
        self.input_size = int(input_size)
        self.stride = int(stride)
        self.output_size = self.input_size // self.stride
        self.num_joints = self.layout.num_keypoints
        self.kind = _KIND_BY_LAYOUT.get(self.layout.name, "crowdpose")
        if min_center_area is None:
            min_center_area = 32.0**2 if self.kind == "coco" else 0.0
        self.min_center_area = float(min_center_area)
        self.sigma = float(sigma)
        self.center_sigma = float(center_sigma)
        self.bg_weight = float(bg_weight)
        self.offset_radius = int(offset_radius)
        self.sigma_rule_index = int(sigma_rule_index)
        self.decode_options = dict(decode_options or {})
        self._decoder: Any = None

    # ------------------------------------------------------------------ encode
    def persons(self, sample: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Persons (N, J+1, 3) at output resolution (centre last) and their official areas (N,) in
        input px², as the official ``get_joints`` + affine would give them."""
        kp = np.asarray(sample.get("keypoints", np.zeros((0, self.num_joints, 3))), dtype=np.float64)
        if kp.size == 0:
            kp = kp.reshape(0, self.num_joints, 3)
        if kp.ndim != 3 or kp.shape[1] not in (self.num_joints, self.num_joints + 1) or kp.shape[2] != 3:
            raise ValueError(
                f"sample 'keypoints' must be (N, {self.num_joints}, 3) for layout {self.layout.name}, "
                f"got {kp.shape}"
            )
        n = kp.shape[0]
        at = (sample.get("keypoints_at") or {}).get(self.output_size)
        if at is not None:
            at = np.asarray(at, dtype=np.float64)
            if at.shape != kp.shape:
                raise ValueError(f"sample keypoints_at[{self.output_size}] is {at.shape}, keypoints {kp.shape}")
        iscrowd = np.asarray(sample.get("iscrowd", np.zeros(n)), dtype=np.int64).reshape(-1)
        nkp = np.asarray(sample.get("num_keypoints", (kp[:, :, 2] > 0).sum(axis=1)), dtype=np.int64).reshape(-1)
        ann_area = sample.get("areas")
        ann_area = np.full(n, np.inf) if ann_area is None else np.asarray(ann_area, dtype=np.float64).reshape(-1)
        for name, arr in (("iscrowd", iscrowd), ("num_keypoints", nkp), ("areas", ann_area)):
            if arr.shape[0] != n:
                raise ValueError(f"sample {name!r} has {arr.shape[0]} entries for {n} persons")
        keep = (iscrowd == 0) | (nkp > 0)
        kp, ann_area = kp[keep], ann_area[keep]
        at = at[keep] if at is not None else None
        n = kp.shape[0]
        j = self.num_joints
        matrix = sample.get("matrix")
        rows = np.zeros((n, j + 1, 3))
        if matrix is not None:
            # the official rules live in image pixels: undo the input affine (and the flip)
            m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
            det = abs(float(np.linalg.det(m[:, :2])))
            xy = kp[:, :j, :2].copy()
            if sample.get("flipped"):
                xy[:, :, 0] = self.input_size - 1 - xy[:, :, 0]
            img = (xy - m[:, 2]) @ np.linalg.inv(m[:, :2]).T
            img_rows = np.zeros((n, j + 1, 2))
            img_rows[:, :j] = img
            area = person_area(img_rows) * det
            image_area = ann_area / det
        else:
            img_rows = np.zeros((n, j + 1, 3))
            img_rows[:, :j] = kp[:, :j]
            area = person_area(img_rows)  # official formula (centre row still zero), input frame
            image_area = ann_area
        if at is not None:
            rows[:, :j] = at[:, :j]  # official output coordinates and visibility
        else:
            rows[:, :j] = kp[:, :j]
            rows[:, :j, :2] /= self.stride
        if kp.shape[1] == j + 1:  # the caller appended the official centre row
            rows[:, j] = at[:, j] if at is not None else kp[:, j] * np.array([1 / self.stride, 1 / self.stride, 1])
        else:
            vis = rows[:, :j, 2] > 0
            num_vis = vis.sum(axis=1)
            total = (rows[:, :j, :2] * vis[:, :, None]).sum(axis=1)
            centre = total / np.maximum(num_vis, 1)[:, None]
            if matrix is not None and n:
                # no labelled joint: the official centre is the image origin's affine image
                origin = m[:, 2] * (self.output_size / self.input_size)
                if sample.get("flipped"):
                    origin = np.array([self.output_size - 1 - origin[0], origin[1]])
            else:
                origin = np.zeros(2)
            centre = np.where(num_vis[:, None] > 0, centre, origin)
            small = image_area < self.min_center_area  # official: the centre row stays zero (v = 0)
            rows[:, j, :2] = np.where(small[:, None], origin, centre)
            rows[:, j, 2] = np.where(small, 0.0, 1.0)
        return rows, area

    def mask(self, sample: Mapping[str, Any]) -> np.ndarray:
        """The (s, s) valid mask at output resolution (1 = valid)."""
        masks = sample.get("masks") or {}
        m = masks.get(self.output_size, masks.get(str(self.output_size)))
        if m is None:
            return np.ones((self.output_size, self.output_size), dtype=np.float32)
        m = np.asarray(m, dtype=np.float32)
        if m.shape != (self.output_size, self.output_size):
            raise ValueError(
                f"sample mask for size {self.output_size} has shape {m.shape}, expected "
                f"({self.output_size}, {self.output_size})"
            )
        return m

    def encode(self, sample: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Targets of one augmented sample: ``heatmap`` (J+1, s, s), ``heatmap_weight`` (J+1, s, s),
        ``offset`` (2J, s, s), ``offset_weight`` (2J, s, s), float32 tensors."""
        joints, area = self.persons(sample)
        targets = encode_targets(
            joints, area, self.mask(sample), self.output_size,
            sigma=self.sigma, center_sigma=self.center_sigma, bg_weight=self.bg_weight,
            radius=self.offset_radius, sigma_rule_index=self.sigma_rule_index,
        )
        return {k: torch.from_numpy(v) for k, v in targets.items()}

    # ------------------------------------------------------------------ decode
    @property
    def decoder(self) -> Any:
        """The :class:`~bupose.dekr.decode.DEKRDecoder` for this layout and the decode options."""
        if self._decoder is None:
            from .decode import DEKRDecoder

            self._decoder = DEKRDecoder(self.layout, **{"stride": float(self.stride), **self.decode_options})
        return self._decoder

    def decode(self, outputs: Sequence[Any], **kwargs: Any) -> Poses:
        """Poses of one image from its per-scale outputs (``bupose.dekr.decode.ScaleOutput``)."""
        return self.decoder.decode(outputs, **kwargs)
