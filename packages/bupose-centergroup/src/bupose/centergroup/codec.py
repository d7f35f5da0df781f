"""CenterGroupCodec: training targets from augmented samples (encode) and poses from outputs (decode).

Implements core's :class:`bupose.core.codec.Codec`.

``encode``: person centre = mean of the visible in-image joints (official ``GenerateRootNode``),
appended as the last joint; mmpose ``HeatmapGenerator`` Gaussians (sigma 2, drawn at the truncated
integer joint, 15x15 window) at 1/4 (``heatmaps_0``) and 1/2 (``heatmaps_1``) of the input, with
the ignore masks ``mask_0`` / ``mask_1`` (the augmentation's crowd masks, 1 = used); instances
``keypoints_with_centre`` (N, J+1, 3) in input pixels, ``box_area`` (N,) the person box area in input
pixels² (the annotation box through the augmentation affine; else ``areas`` / 0.53; else the
keypoint box), ``annotated`` (N,) whether the person has keypoint annotations.

``decode``: with a bound head (:meth:`CenterGroupCodec.bind`, the pipeline's way) and the
embedding outputs, node extraction + the grouping model + the official pose decode, single branch.
Unbound (ideal target maps, no network), a **bupose addition that is not the official decoding**:
each centre candidate scoring at least ``min_score`` (no top-3 rule) takes, per joint type, the
nearest kept keypoint candidate (score = candidate peak; person score = centre peak). The official decode needs the grouping model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bupose.core.algorithms.targets import gaussian_heatmaps, instance_centers
from bupose.core.codec import BaseCodec, Encoded, image_points, input_hw_of
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec

from .decode import adjust, decode_poses, select
from .nodes import CENTRES, KEYPOINTS, find_candidates, stage_average

__all__ = ["CenterGroupCodec"]


class CenterGroupCodec(BaseCodec):
    """Encode augmented samples into CenterGroup targets; decode network outputs into poses.

    Options: ``sigma`` 2 (official ``sigma`` of both resolutions), ``conf_thresh`` 0.5 (pose score),
    ``adjust`` True. Sample fields: ``keypoints`` (N, J, 3) in input pixels, optional
    ``keypoints_at`` / ``masks`` (the augmentation's per-resolution joints and crowd masks),
    ``bboxes`` (N, 4) xywh in original pixels with ``matrix``, ``areas``, ``iscrowd``,
    ``num_keypoints``.
    """

    sample_keys = ("keypoints",)
    output_fields = ("heatmaps_0", "heatmaps_1")

    def __init__(
        self,
        layout: str | LayoutSpec = "coco17",
        input_size: int | tuple[int, int] = 512,
        *,
        sigma: float = 2.0,
        conf_thresh: float = 0.5,
        adjust: bool = True,
        head: Any = None,
    ) -> None:
        super().__init__(layout, input_size)
        h, w = self.input_hw
        if h % 4 or w % 4:
            raise ValueError(f"CenterGroupCodec: input size {self.input_hw} is not a multiple of 4")
        self.sigma = float(sigma)
        self.conf_thresh = float(conf_thresh)
        self.adjust = bool(adjust)
        self.head = head

    def bind(self, head: Any) -> CenterGroupCodec:
        """Decode with ``head``'s grouping model (a :class:`~bupose.centergroup.model.CenterGroupHead`)."""
        self.head = head
        return self

    def output_sizes(self, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        """``{"1/4": (h/4, w/4), "1/2": (h/2, w/2)}``."""
        h, w = input_hw_of(self.input_hw if input_size is None else input_size)
        if h % 4 or w % 4:
            raise ValueError(f"CenterGroupCodec: input size {(h, w)} is not a multiple of 4")
        return {"1/4": (h // 4, w // 4), "1/2": (h // 2, w // 2)}

    # -- encode
    def _people(self, sample: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        j = self.num_joints
        kp = np.asarray(sample["keypoints"], dtype=np.float64)
        if kp.size == 0:
            kp = kp.reshape(0, j, 3)
        if kp.ndim != 3 or kp.shape[1:] != (j, 3):
            raise ValueError(f"sample 'keypoints' must be (N, {j}, 3) for layout {self.layout.name}, got {kp.shape}")
        n = kp.shape[0]
        iscrowd = np.asarray(sample.get("iscrowd", np.zeros(n)), dtype=np.int64).reshape(-1)
        nkp = np.asarray(sample.get("num_keypoints", (kp[:, :, 2] > 0).sum(axis=1)), dtype=np.int64).reshape(-1)
        for name, arr in (("iscrowd", iscrowd), ("num_keypoints", nkp)):
            if arr.shape[0] != n:
                raise ValueError(f"sample {name!r} has {arr.shape[0]} entries for {n} persons")
        keep = (iscrowd == 0) | (nkp > 0)
        return kp, keep, nkp

    def _box_area(self, sample: Mapping[str, Any], kp: np.ndarray) -> np.ndarray:
        n = kp.shape[0]
        boxes = sample.get("bboxes")
        matrix = sample.get("matrix")
        if boxes is not None and matrix is not None and np.asarray(boxes).shape == (n, 4):
            det = abs(float(np.linalg.det(np.asarray(matrix, dtype=np.float64).reshape(2, 3)[:, :2])))
            b = np.asarray(boxes, dtype=np.float64)
            return b[:, 2] * b[:, 3] * det
        if sample.get("areas") is not None:
            return np.asarray(sample["areas"], dtype=np.float64).reshape(-1) / 0.53
        vis = kp[..., 2] > 0
        x, y = kp[..., 0], kp[..., 1]
        wb = np.where(vis, x, -np.inf).max(axis=1, initial=-np.inf) - np.where(vis, x, np.inf).min(axis=1, initial=np.inf)
        hb = np.where(vis, y, -np.inf).max(axis=1, initial=-np.inf) - np.where(vis, y, np.inf).min(axis=1, initial=np.inf)
        return np.where(vis.any(axis=1), wb * hb, 0.0)

    def encode(self, sample: Mapping[str, Any]) -> Encoded:
        """Dense ``heatmaps_0`` / ``heatmaps_1`` (J+1, ·) and ``mask_0`` / ``mask_1``; instances
        ``keypoints_with_centre``, ``box_area``, ``annotated``."""
        self.check_sample(sample)
        kp, keep, nkp = self._people(sample)
        areas = self._box_area(sample, kp)
        kp, nkp, areas = kp[keep], nkp[keep], areas[keep]
        h, w = self.input_hw
        centre, has = instance_centers(kp, "mean_visible", in_map=(h, w))
        with_c = np.concatenate([kp, np.zeros((kp.shape[0], 1, 3))], axis=1)
        with_c[:, -1, :2] = centre
        with_c[:, -1, 2] = np.where(has, 2.0, 0.0)
        dense: dict[str, torch.Tensor] = {}
        masks = sample.get("masks") or {}
        at = sample.get("keypoints_at") or {}
        for level, (name, stride) in enumerate((("heatmaps_0", 4), ("heatmaps_1", 2))):
            hs, ws = h // stride, w // stride
            src = at.get(hs)
            if src is not None and np.asarray(src).shape[0] == len(keep):
                joints = np.asarray(src, dtype=np.float64)[keep]
                joints = np.concatenate([joints, with_c[:, -1:].copy()], axis=1)
                joints[:, -1, :2] = centre / stride
            else:
                joints = with_c.copy()
                joints[..., :2] = joints[..., :2] / stride
            joints[..., :2] = np.floor(joints[..., :2])
            hm, _ = gaussian_heatmaps(joints, (hs, ws), self.sigma)
            dense[name] = torch.from_numpy(hm)
            mask = masks.get(hs)
            mask = np.ones((hs, ws), np.float32) if mask is None else np.asarray(mask, dtype=np.float32).reshape(hs, ws)
            dense[f"mask_{level}"] = torch.from_numpy(np.ascontiguousarray(mask))
        return Encoded(
            dense=dense,
            instances={
                "keypoints_with_centre": torch.from_numpy(with_c.astype(np.float32)),
                "box_area": torch.from_numpy(np.maximum(areas, 1.0).astype(np.float32)),
                "annotated": torch.from_numpy((nkp > 0).astype(np.float32)),
            },
        )

    # -- decode
    def decode(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]]) -> list[Poses]:
        """One :class:`Poses` per image of batched outputs; image pixels through ``meta["matrix"]``."""
        for name in self.output_fields:
            if name not in outputs:
                raise KeyError(f"CenterGroupCodec.decode: outputs lack {name!r}; got {sorted(outputs)}")
        h4 = outputs["heatmaps_0"]
        b, k, hh, ww = h4.shape
        j = self.num_joints
        if k != j + 1:
            raise ValueError(f"CenterGroupCodec.decode: heatmaps_0 has {k} channels, expected {j + 1}")
        if len(metas) != b:
            raise ValueError(f"CenterGroupCodec.decode: {len(metas)} metas for {b} images")
        input_hw = (hh * 4, ww * 4)
        hm = stage_average(h4.float(), outputs["heatmaps_1"].float(), range(j + 1), input_hw)
        kp_hm, c_hm = hm[:, :j], hm[:, j:]
        valid = torch.ones((b, *input_hw), device=hm.device)
        grouped = self.head is not None and "kp_embed" in outputs and "person_embed" in outputs
        results: list[Poses] = []
        if grouped:
            vq = torch.ones((b, hh, ww), device=hm.device)
            nodes, _, _ = self.head.nodes(kp_hm, c_hm, valid, vq, outputs["kp_embed"].float(), outputs["person_embed"].float())
            preds = self.head.group(nodes)
            per = {"loc": preds.loc, "hard_loc": preds.hard_loc, "vis": preds.vis, "person": preds.person}
        else:
            kps = find_candidates(kp_hm, valid, KEYPOINTS)
            cs = find_candidates(c_hm, valid, CENTRES)
        for i in range(b):
            if grouped:
                p = select({key: v[:, i] for key, v in per.items()}, nodes.c_keep[i])
                poses, scores = decode_poses(p, kp_hm[i] if self.adjust else None, conf_thresh=self.conf_thresh)
                arr = poses[..., :3]
            else:
                arr, scores = self._nearest(kps, cs, kp_hm[i], i)
            pts = image_points(arr.detach().cpu().numpy().astype(np.float64), metas[i])
            results.append(Poses(pts, scores.detach().cpu().numpy(), self.layout.name))
        return results

    def _nearest(self, kps: Any, cs: Any, heatmaps: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Unbound decode of image ``i``: per kept centre, the nearest kept candidate of every type."""
        ck = cs.keep[i, 0] & (cs.score[i, 0] >= CENTRES.min_score)  # no top-3 rule without a network
        cxy = torch.stack([cs.x[i, 0][ck], cs.y[i, 0][ck]], -1).float()  # (P, 2)
        kxy = torch.stack([kps.x[i], kps.y[i]], -1).float()  # (J, K, 2)
        d = ((kxy[None] - cxy[:, None, None]) ** 2).sum(-1)  # (P, J, K)
        d = d.masked_fill(~kps.keep[i][None], float("inf"))
        best = d.argmin(-1)  # (P, J)
        xy = torch.gather(kxy[None].expand(len(cxy), -1, -1, -1), 2, best[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
        score = torch.gather(kps.score[i][None].expand(len(cxy), -1, -1), 2, best[..., None])[..., 0]
        if self.adjust:
            xy = adjust(xy, score, heatmaps)
        return torch.cat([xy, score[..., None]], -1), cs.score[i, 0][ck]
