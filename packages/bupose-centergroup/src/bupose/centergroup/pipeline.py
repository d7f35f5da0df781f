"""CenterGroup inference pipeline: resize/warp, detector on [image, mirror], two grouping branches, merge.

``CenterGroupPipeline(model).predict_batch(images)`` turns RGB uint8 images of any sizes into one
:class:`~bupose.core.poses.Poses` per image, in image pixels, with the official test behaviour
(``configs/centergroup/base.py`` ``test_cfg``): short side to the input size, long side ceiled to a
multiple of 64, centre rounded half to even (mmpose); flip test with **two full branches** (the image
and its mirror each run node extraction + grouping in their own frame, on heatmaps flip-averaged
with the other branch); merge per person index; the official fallback to the unflipped branch when
the branches keep different numbers of centres, reported with a :class:`FlipMergeWarning`; pose
scores, ``adjust``, back-projection; every kept centre is output (no NMS, no threshold).

Multi-scale (``scales=(0.5, 1, 2)``, the official ``--multi-scale``): heatmaps of every scale are
projected to the scale-1 input and averaged; node features are blended 0.2 / 0.6 / 0.2 (equal
weights for other scale counts), positions come from the scale-1 pad mask.

Batching: images whose scale-1 input sizes agree run through the network together (and through
the grouping model together); every layer works per sample in eval mode, so results equal batch
size 1 (the official code asserts batch 1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from bupose.core.algorithms.geometry import (
    WarpMeta,
    back_project,
    center_scale_affine,
    multi_scale_size,
    warp_image,
    warp_mask,
)
from bupose.core.algorithms.image import normalize_images
from bupose.core.algorithms.tta import flip_input
from bupose.core.amp import autocast
from bupose.core.benchmark import Stopwatch, stage
from bupose.core.inference import Pipeline, check_image
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .decode import MergeError, decode_poses, flip_back, merge_branches, select
from .nodes import ParsingConfig, extract_nodes, flip_average
from .options import CenterGroupOptions

__all__ = ["CenterGroupPipeline", "FlipMergeWarning", "ImageResult", "default_input_size", "prepare_image"]


class FlipMergeWarning(UserWarning):
    """The flip-test branches kept different numbers of centres: the unflipped branch was used."""


def default_input_size(model: PoseModel) -> int:
    """The official test input size: ``model.config['input_size']`` when set, 640 for W48, else 512."""
    size = model.config.get("input_size") if isinstance(model.config, dict) else None
    if size is not None:
        return int(size[0] if isinstance(size, (list, tuple)) else size)
    return 640 if "w48" in str(model.backbone_name) else 512


@dataclass
class Prepared:
    """One image at one test scale: the warped uint8 image, its geometry, pad masks (1 = image) at
    input resolution and at 1/4."""

    image: np.ndarray
    meta: WarpMeta
    valid_full: np.ndarray
    valid_quarter: np.ndarray


def prepare_image(image: np.ndarray, input_size: int, scale: float = 1.0, multiple: int = 64) -> Prepared:
    """The official test-time resize (mmpose ``_resize_align_multi_scale`` with a true ceil and Python
    ``round`` for the centre) and pad masks from warping an all-ones image at 1/4 and 1x."""
    meta = multi_scale_size(image.shape[:2], input_size, scale, multiple=multiple, rounding="ceil", center_rounding="half_even")
    warped = warp_image(image, meta)
    w, h = meta.size_wh
    ones = np.ones(image.shape[:2], np.float32)
    full = warp_mask(ones, center_scale_affine(meta.center, meta.scale, (w, h)), (w, h))
    quarter = warp_mask(ones, center_scale_affine(meta.center, meta.scale, (w // 4, h // 4)), (w // 4, h // 4))
    return Prepared(warped, meta, full, quarter)


@dataclass
class ImageResult:
    """One image's decoded output in network-input pixels: ``poses`` (P, J, 4) [x, y, vis, vis],
    ``scores`` (P,), whether the flip merge fell back (``merge_failed``)."""

    poses: torch.Tensor
    scores: torch.Tensor
    merge_failed: bool


class CenterGroupPipeline(Pipeline):
    """CenterGroup test pipeline, built from :class:`~bupose.centergroup.options.CenterGroupOptions`.

    ``CenterGroupPipeline(model, options=None, **values)``: ``values`` override fields of ``options``
    (``flip=False``, ``scales=(0.5, 1, 2)``, ``adjust=False``...). ``flip=False`` runs one branch
    (the official ``flip_test=False``).
    """

    options_class: ClassVar[type] = CenterGroupOptions

    def __init__(self, model: PoseModel, options: CenterGroupOptions | None = None, /, **values: Any) -> None:
        super().__init__(model, options, **values)
        opts: CenterGroupOptions = self.options
        head = model.head
        if not hasattr(head, "group_model"):
            raise TypeError(f"CenterGroupPipeline needs a CenterGroup head, got {type(head).__name__}")
        self.flip = bool(opts.flip)
        self.scales = tuple(float(s) for s in opts.scales)
        self.input_size = int(opts.input_size) if opts.input_size is not None else default_input_size(model)
        divisibility = int(getattr(model.backbone, "size_divisibility", 1) or 1)
        self.size_multiple = math.lcm(int(opts.size_multiple), divisibility, 4)
        self.keypoints_cfg = ParsingConfig(head.keypoints_cfg.nms_kernel, opts.top_k_per_type, opts.min_score, opts.min_top_k)
        self.centres_cfg = ParsingConfig(head.centres_cfg.nms_kernel, opts.max_num_people, opts.min_score, opts.min_top_k)
        self.flip_index = [int(i) for i in model.layout.flip_index]
        self.merge_failures = 0
        """How many images fell back to the unflipped branch (each one also a :class:`FlipMergeWarning`)."""

    # -- network
    def _network(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(self.device, bool(self.options.amp)):
            out = self.model(x)
        return {k: v.float() for k, v in out.items()}

    def _scale_outputs(self, x: torch.Tensor, base_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keypoint / centre heatmaps (per branch, at ``base_hw``) and embeddings of one scale's batch."""
        n = x.shape[0]
        batch = torch.cat([x, flip_input(x)]) if self.flip else x
        out = self._network(batch)
        kp, c = self.model.head.heatmaps(out, base_hw)
        if self.flip:
            kp = torch.cat([flip_average(kp[:n], kp[n:], self.flip_index), flip_average(kp[n:], kp[:n], self.flip_index)])
            c = torch.cat([flip_average(c[:n], c[n:], None), flip_average(c[n:], c[:n], None)])
        return kp, c, out["kp_embed"], out["person_embed"]

    @torch.inference_mode()
    def forward_tensors(
        self,
        inputs: Sequence[torch.Tensor],
        valid_full: torch.Tensor,
        valid_quarter: torch.Tensor,
    ) -> list[ImageResult]:
        """Decoded results (input pixels of the scale-1 input) for a batch of normalised inputs, one
        (B, 3, H_s, W_s) tensor per test scale (scale 1 first defines the frame), with the scale-1
        pad masks ``valid_full`` (B, H, W) and ``valid_quarter`` (B, H/4, W/4), 1 = image."""
        return self.group_and_decode(self.network_maps(inputs), valid_full, valid_quarter)

    @torch.inference_mode()
    def network_maps(self, inputs: Sequence[torch.Tensor]) -> dict[str, Any]:
        """The network part: per-branch keypoint / centre heatmaps at the scale-1 input size
        (flip-averaged, averaged over scales) and the embedding maps of every scale."""
        base_hw = (int(inputs[0].shape[-2]), int(inputs[0].shape[-1]))
        kp_sum = c_sum = None
        kp_embeds: list[torch.Tensor] = []
        person_embeds: list[torch.Tensor] = []
        for x in inputs:
            kp, c, ke, pe = self._scale_outputs(x, base_hw)
            kp_sum = kp if kp_sum is None else kp_sum + kp
            c_sum = c if c_sum is None else c_sum + c
            kp_embeds.append(ke)
            person_embeds.append(pe)
        assert kp_sum is not None and c_sum is not None
        return {
            "kp": kp_sum / len(inputs) if len(inputs) > 1 else kp_sum,
            "centre": c_sum / len(inputs) if len(inputs) > 1 else c_sum,
            "kp_embed": kp_embeds,
            "person_embed": person_embeds,
            "n": int(inputs[0].shape[0]),
            "width": base_hw[1],
        }

    @torch.inference_mode()
    def group_and_decode(self, maps: dict[str, Any], valid_full: torch.Tensor, valid_quarter: torch.Tensor) -> list[ImageResult]:
        """The part after the network: node extraction and grouping of every branch, flip merge
        (with the official fallback), pose scores, ``adjust``."""
        head = self.model.head
        kp_hm, c_hm, n, width = maps["kp"], maps["centre"], maps["n"], maps["width"]
        vf = valid_full.to(kp_hm.device, kp_hm.dtype)
        vq = valid_quarter.to(kp_hm.device, kp_hm.dtype)
        if self.flip:
            vf = torch.cat([vf, torch.flip(vf, dims=[2])])
            vq = torch.cat([vq, torch.flip(vq, dims=[2])])
        scales = len(maps["kp_embed"])
        weights = [1.0] if scales == 1 else _blend_weights(scales)
        nodes, _, _ = extract_nodes(
            kp_hm, c_hm, vf, vq, maps["kp_embed"], maps["person_embed"], weights=weights,
            keypoints=self.keypoints_cfg, centres=self.centres_cfg,
        )
        preds = head.group(nodes)
        per = {"loc": preds.loc, "hard_loc": preds.hard_loc, "vis": preds.vis, "person": preds.person}
        results: list[ImageResult] = []
        opts: CenterGroupOptions = self.options
        for i in range(n):
            a = select({k: v[:, i] for k, v in per.items()}, nodes.c_keep[i])
            merged, failed = a, False
            if self.flip:
                b = flip_back(select({k: v[:, n + i] for k, v in per.items()}, nodes.c_keep[n + i]), self.flip_index, width)
                try:
                    merged = merge_branches(a, b)
                except MergeError as exc:
                    failed = True
                    self.merge_failures += 1
                    warnings.warn(  # the running count makes every message distinct: none is swallowed
                        f"CenterGroup flip test (fallback #{self.merge_failures} of this pipeline): {exc}; "
                        "using the unflipped branch alone (the official fallback)",
                        FlipMergeWarning,
                        stacklevel=3,
                    )
            poses, scores = decode_poses(
                merged, kp_hm[i] if opts.adjust else None, layer=opts.tformer_layer, conf_thresh=opts.conf_thresh
            )
            results.append(ImageResult(poses, scores, failed))
        return results

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray], *, stopwatch: Stopwatch | None = None) -> list[Poses]:
        """Poses for each RGB uint8 (H, W, 3) image, in image pixels.

        ``stopwatch`` (``bupose bench``) accumulates the ``forward`` stage (resize, normalise, network
        on both flip branches and every scale) and the ``decode`` stage (node extraction, grouping
        transformer, flip merge, pose scores, back-projection).
        """
        if len(images) == 0:
            return []
        arrays = [check_image(im, k) for k, im in enumerate(images)]
        order = _scale_order(self.scales)
        out: list[Poses | None] = [None] * len(arrays)
        with stage(stopwatch, "forward"):
            prepared = [
                [prepare_image(a, self.input_size, self.scales[j], self.size_multiple) for j in order] for a in arrays
            ]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(prepared):
            groups.setdefault(p[0].meta.size_wh, []).append(i)
        for idx in groups.values():
            with stage(stopwatch, "forward"):
                inputs = [
                    normalize_images([prepared[i][s].image for i in idx], self.device).contiguous()
                    for s in range(len(order))
                ]
                maps = self.network_maps(inputs)
            with stage(stopwatch, "decode"):
                vf = torch.from_numpy(np.stack([prepared[i][0].valid_full for i in idx]))
                vq = torch.from_numpy(np.stack([prepared[i][0].valid_quarter for i in idx]))
                for k, res in zip(idx, self.group_and_decode(maps, vf, vq), strict=True):
                    pts = back_project(res.poses.cpu().numpy(), prepared[k][0].meta)
                    out[k] = Poses(pts[..., :3], res.scores.cpu().numpy(), self.model.layout.name)
        return [p for p in out if p is not None]


def _scale_order(scales: Sequence[float]) -> list[int]:
    """Indices of ``scales`` with scale 1 first, then the others in their given order."""
    one = [i for i, s in enumerate(scales) if s == 1.0]
    return one + [i for i, s in enumerate(scales) if s != 1.0]


def _blend_weights(n: int) -> list[float]:
    """Feature blend weights in :func:`_scale_order` order: the official 0.6 for scale 1 and 0.2 for
    the two others; equal weights for other scale counts."""
    if n == 3:
        return [0.6, 0.2, 0.2]
    return [1.0 / n] * n

