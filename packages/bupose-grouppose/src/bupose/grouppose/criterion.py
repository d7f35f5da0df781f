"""GroupPose's Hungarian matcher and set criterion (keypoint regression only, no boxes).

Targets use the official per-image form: ``{"labels": (n,) int64, "keypoints": (n, 3K) =
[x1, y1, ..., xK, yK, v1..vK] normalised to the image, v in {0, 1}, "area": (n,) normalised by
w·h}``. :meth:`SetCriterion.targets_from_batch` builds them from a bupose
:class:`~bupose.core.batch.Batch` (instances ``keypoints`` (n, K, 3) and ``areas`` (n,), both
normalised by the codec).

Matching cost per (query, target): ``2 · focal class cost + 10 · L1 over visible coordinates +
4 · (1 - OKS)``; losses ``loss_ce`` (sigmoid focal, α 0.25, γ 2, × num_queries / num_boxes),
``loss_keypoints`` (visible L1 / num_boxes), ``loss_oks`` (Σ(1 - OKS) / num_boxes) on the final
layer, each auxiliary layer (suffix ``_<l>``) and the encoder proposals (``_interm``); logged
alongside: ``class_error`` and the matcher's mean costs ``set_class`` / ``set_keypoints``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bupose.core.batch import Batch
from bupose.core.specs import LayoutSpec

__all__ = ["HungarianMatcher", "SetCriterion", "keypoint_oks", "sigmoid_focal_loss"]

Target = Mapping[str, torch.Tensor]


def keypoint_oks(
    pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor, area: torch.Tensor, sigmas: torch.Tensor
) -> torch.Tensor:
    """OKS of paired poses: ``pred``/``gt`` (..., K, 2), ``visible`` (..., K), ``area`` (...) ->
    Σ v·exp(-d² / (2·area·(2σ)²)) / (Σ v + 1e-6)."""
    variances = (sigmas * 2) ** 2
    d2 = (pred[..., 0] - gt[..., 0]) ** 2 + (pred[..., 1] - gt[..., 1]) ** 2
    e = torch.exp(-d2 / (area[..., None] * variances * 2)) * visible
    return e.sum(-1) / (visible.sum(-1) + 1e-6)


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, num_boxes: float, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """DETR's focal loss: per-element focal BCE, mean over queries, summed, / num_boxes."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_boxes


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets per image (scipy ``linear_sum_assignment``)."""

    def __init__(
        self,
        num_keypoints: int,
        sigmas: Sequence[float],
        cost_class: float = 2.0,
        cost_keypoints: float = 10.0,
        cost_oks: float = 4.0,
        focal_alpha: float = 0.25,
    ) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.register_buffer("sigmas", torch.tensor(list(sigmas), dtype=torch.float32), persistent=False)
        self.cost_class, self.cost_keypoints, self.cost_oks = cost_class, cost_keypoints, cost_oks
        self.focal_alpha = focal_alpha

    @torch.no_grad()
    def cost_blocks(
        self, logits: torch.Tensor, keypoints: torch.Tensor, targets: Sequence[Target]
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Per-image (Q, n_b) cost matrices and the mean class / keypoint costs over the batch."""
        b, q = logits.shape[:2]
        k = self.num_keypoints
        prob = logits.flatten(0, 1).float().sigmoid()
        out_kp = keypoints.flatten(0, 1).float()[:, : 2 * k]
        tgt_ids = torch.cat([t["labels"] for t in targets]).long()
        tgt_kp = torch.cat([t["keypoints"] for t in targets]).float()
        tgt_area = torch.cat([t["area"] for t in targets]).float()
        sizes = [len(t["labels"]) for t in targets]
        if tgt_kp.shape[0] == 0:
            empty = prob.new_zeros(())
            return [prob.new_zeros((q, 0)) for _ in range(b)], {"class": empty, "keypoints": empty}
        z_gt, v_gt = tgt_kp[:, : 2 * k], tgt_kp[:, 2 * k :]
        alpha, gamma = self.focal_alpha, 2.0
        neg = (1 - alpha) * (prob**gamma) * (-(1 - prob + 1e-8).log())
        pos = alpha * ((1 - prob) ** gamma) * (-(prob + 1e-8).log())
        cost_class = pos[:, tgt_ids] - neg[:, tgt_ids]
        cost_kp = ((out_kp[:, None, :] - z_gt[None]).abs() * v_gt.repeat_interleave(2, dim=1)[None]).sum(-1)
        oks = keypoint_oks(
            out_kp.view(-1, 1, k, 2), z_gt.view(1, -1, k, 2), v_gt[None], tgt_area[None], self.sigmas
        ).clamp(min=1e-6)
        c = self.cost_class * cost_class + self.cost_keypoints * cost_kp + self.cost_oks * (1 - oks)
        c = c.view(b, q, -1).cpu()
        blocks = [blk[i] for i, blk in enumerate(c.split(sizes, -1))]
        return blocks, {"class": cost_class.mean(), "keypoints": cost_kp.mean()}

    @torch.no_grad()
    def forward(
        self, logits: torch.Tensor, keypoints: torch.Tensor, targets: Sequence[Target]
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
        """[(query indices, target indices)] per image and the mean costs."""
        from scipy.optimize import linear_sum_assignment

        blocks, means = self.cost_blocks(logits, keypoints, targets)
        out = []
        for blk in blocks:
            src, tgt = linear_sum_assignment(blk.numpy())
            out.append((torch.as_tensor(src, dtype=torch.int64), torch.as_tensor(tgt, dtype=torch.int64)))
        return out, means


class SetCriterion(nn.Module):
    """GroupPose's losses on the final, auxiliary and encoder outputs (see the module docstring)."""

    def __init__(
        self,
        layout: LayoutSpec,
        *,
        cls_loss_coef: float = 2.0,
        keypoints_loss_coef: float = 10.0,
        oks_loss_coef: float = 4.0,
        interm_loss_coef: float = 1.0,
        focal_alpha: float = 0.25,
        set_cost_class: float = 2.0,
        set_cost_keypoints: float = 10.0,
        set_cost_oks: float = 4.0,
    ) -> None:
        super().__init__()
        self.num_keypoints = layout.num_keypoints
        self.matcher = HungarianMatcher(
            layout.num_keypoints, layout.sigmas, set_cost_class, set_cost_keypoints, set_cost_oks, focal_alpha
        )
        self.focal_alpha = focal_alpha
        self.coefs = {"loss_ce": cls_loss_coef, "loss_keypoints": keypoints_loss_coef, "loss_oks": oks_loss_coef}
        self.interm_loss_coef = interm_loss_coef

    def targets_from_batch(self, batch: Batch) -> list[dict[str, torch.Tensor]]:
        """Official-form targets from ``batch.instances`` (``keypoints`` (n, K, 3) normalised x, y
        and v in {0, 1}; ``areas`` (n,) normalised)."""
        if not batch.instances:
            raise ValueError("grouppose loss: the batch has no instances (the codec's keypoints/areas per image)")
        out = []
        for i, inst in enumerate(batch.instances):
            if "keypoints" not in inst or "areas" not in inst:
                raise ValueError(f"grouppose loss: instances of image {i} need 'keypoints' and 'areas', got {sorted(inst)}")
            kp = inst["keypoints"].float()
            n = kp.shape[0]
            flat = torch.cat([kp[:, :, :2].reshape(n, 2 * kp.shape[1]), kp[:, :, 2]], 1)
            out.append({"labels": torch.ones(n, dtype=torch.int64, device=kp.device), "keypoints": flat,
                        "area": inst["areas"].float().reshape(n)})  # fmt: skip
        return out

    def _losses(
        self, logits: torch.Tensor, keypoints: torch.Tensor, targets: Sequence[Target], num_boxes: float
    ) -> dict[str, torch.Tensor]:
        k = self.num_keypoints
        indices, means = self.matcher(logits, keypoints, targets)
        dev = logits.device
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)]).to(dev)
        src_idx = torch.cat([src for src, _ in indices]).to(dev)
        labels = torch.cat([t["labels"][tgt.to(t["labels"].device)] for t, (_, tgt) in zip(targets, indices)]).to(dev)
        onehot = torch.zeros_like(logits, dtype=torch.float32)
        onehot[batch_idx, src_idx, labels] = 1.0
        loss_ce = sigmoid_focal_loss(logits.float(), onehot, num_boxes, self.focal_alpha, 2.0) * logits.shape[1]
        matched = logits[batch_idx, src_idx]
        if matched.numel():
            acc = (matched.argmax(-1) == labels).float().mean() * 100
        else:
            acc = logits.new_zeros(())
        tgt = torch.cat([t["keypoints"][j.to(t["keypoints"].device)] for t, (_, j) in zip(targets, indices)]).to(dev)
        area = torch.cat([t["area"][j.to(t["area"].device)] for t, (_, j) in zip(targets, indices)]).to(dev)
        src = keypoints[batch_idx, src_idx][:, : 2 * k].float()
        z, v = tgt[:, : 2 * k].float(), tgt[:, 2 * k :].float()
        l1 = ((src - z).abs() * v.repeat_interleave(2, dim=1)).sum() / num_boxes
        oks = keypoint_oks(src.view(-1, k, 2), z.view(-1, k, 2), v, area, self.matcher.sigmas).clamp(min=1e-6)
        return {
            "loss_ce": loss_ce,
            "class_error": 100 - acc,
            "loss_keypoints": l1,
            "loss_oks": (1 - oks).sum() / num_boxes,
            "set_class": means["class"],
            "set_keypoints": means["keypoints"],
        }

    def forward(self, outputs: Mapping[str, Any], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Every term, unweighted, official names: ``loss_ce``, ``class_error``, ``loss_keypoints``,
        ``loss_oks``, ``set_class``, ``set_keypoints`` (+ ``_<l>`` per auxiliary layer, ``_interm``).
        The auxiliary terms have no ``class_error`` (as officially)."""
        num_boxes = float(max(sum(len(t["labels"]) for t in targets), 1))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            nb = torch.tensor([num_boxes], device=outputs["pred_logits"].device)
            torch.distributed.all_reduce(nb)
            num_boxes = max(float(nb.item()) / torch.distributed.get_world_size(), 1.0)
        losses = self._losses(outputs["pred_logits"], outputs["pred_keypoints"], targets, num_boxes)
        aux_logits = outputs.get("aux_pred_logits")
        if aux_logits is not None:
            for lid in range(aux_logits.shape[1]):
                part = self._losses(aux_logits[:, lid], outputs["aux_pred_keypoints"][:, lid], targets, num_boxes)
                losses.update({f"{n}_{lid}": v for n, v in part.items() if n != "class_error"})
        if "interm_pred_logits" in outputs:
            part = self._losses(outputs["interm_pred_logits"], outputs["interm_pred_keypoints"], targets, num_boxes)
            losses.update({f"{n}_interm": v for n, v in part.items() if n != "class_error"})
        return losses

    def weight_dict(self, num_aux: int) -> dict[str, float]:
        """The official weight of every optimised term (``loss_total = Σ loss · weight``)."""
        out = dict(self.coefs)
        for lid in range(num_aux):
            out.update({f"{n}_{lid}": c for n, c in self.coefs.items()})
        out.update({f"{n}_interm": c * self.interm_loss_coef for n, c in self.coefs.items()})
        return out

    def weighted(self, outputs: Mapping[str, Any], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """The optimised terms times their weights (their sum is the official total loss)."""
        losses = self.forward(outputs, targets)
        aux = outputs.get("aux_pred_logits")
        weights = self.weight_dict(0 if aux is None else int(aux.shape[1]))
        return {name: losses[name] * w for name, w in weights.items() if name in losses}


def numpy_targets(targets: Sequence[Mapping[str, Any]]) -> list[dict[str, torch.Tensor]]:
    """Official-form targets from arrays (tests, scripts)."""
    return [{k: torch.as_tensor(np.asarray(v)) for k, v in t.items()} for t in targets]
