"""CenterGroup training pieces: heatmap loss, centre -> ground-truth matching, grouping losses.

- :func:`heatmap_loss`: mmpose ``MultiLossFactory`` with the AE loss off: per stage the mean of
  ``(pred - gt)² · mask`` over the J+1 heatmap channels, summed over the two stages, averaged over
  the batch.
- :func:`match_centres`: the official greedy ``generate_person_targets``: cost
  ``1 - exp(-d² / (2 (2·0.15)² (box_w·box_h·0.53 + eps)))`` between detected centres and the GT
  centres of the same image (full-resolution pixels), repeated global argmin while the cost is
  <= ``max_match_dist`` (0.8); GT people without keypoint annotations are not matched; a detected
  centre inside an ignore region is ignored.
- :func:`group_losses`: over every prediction head, the person focal loss (γ 2, no α) on centres
  that are not ignored, the visibility focal loss on the joints of matched centres with the
  ``mask_vis_loss`` rule (visible joints whose soft location has OKS < 0.5 dropped; pooled over
  heads), the L1 location loss on visible joints of matched centres (mean over heads).
- :func:`centergroup_losses`: what :meth:`CenterGroupHead.loss` returns (official factors: heatmap
  x10, location x0.02, visibility and person x1; stage 1: the heatmap loss alone).

OKS runs on any device (the official ``compute_oks`` calls ``.cuda()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bupose.core.batch import Batch

__all__ = [
    "LOSS_FACTORS",
    "CentreTargets",
    "centergroup_losses",
    "focal_loss",
    "group_losses",
    "heatmap_loss",
    "joint_oks",
    "match_centres",
]

LOSS_FACTORS = {"heatmap": 10.0, "loc": 0.02, "vis": 1.0, "person": 1.0}
"""Official ``train_cfg``: ``bu_loss_factor`` 10, ``group_loss`` loc 0.02 / vis 1 / person 1."""
MATCH_SIGMA = 0.15
AREA_SCALE = 0.53
EPS = float(torch.finfo(torch.float32).eps)


def heatmap_loss(
    outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Per-image heatmap loss (B,), summed over stages; ``outputs[s]`` may carry extra channels
    (tags) after the ``targets[s].shape[1]`` heatmaps; ``masks[s]`` (B, h, w)."""
    total = None
    for out, gt, mask in zip(outputs, targets, masks, strict=True):
        pred = out[:, : gt.shape[1]]
        loss = ((pred - gt) ** 2 * mask[:, None]).mean(dim=(1, 2, 3))
        total = loss if total is None else total + loss
    assert total is not None
    return total


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise ``torchvision.ops.sigmoid_focal_loss(alpha=-1, reduction="none")``."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return ce * (1 - p_t) ** gamma


def joint_oks(pred: torch.Tensor, gt: torch.Tensor, areas: torch.Tensor, sigmas: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Per-joint OKS ``exp(-d² / (2 (2σ)² (area + eps)))``: ``pred``/``gt`` (..., P, J, 2), ``areas`` (P,)."""
    sig = torch.as_tensor(sigmas, dtype=pred.dtype, device=pred.device)
    d2 = ((pred - gt) ** 2).sum(-1)
    return torch.exp(-d2 / (2 * (2 * sig) ** 2 * (areas[:, None] + EPS)))


@dataclass
class CentreTargets:
    """Per detected centre (M): ``is_tp`` (M,) float, ``ignore`` (M,) float (1 = used, the official
    name), ``joints`` (M, J+1, 3) of the matched person (zeros otherwise), ``box_area`` (M,)
    box_w·box_h of the matched person (0 otherwise)."""

    is_tp: torch.Tensor
    ignore: torch.Tensor
    joints: torch.Tensor
    box_area: torch.Tensor

    @property
    def vis_target(self) -> torch.Tensor:
        return self.joints[..., 2] > 0

    @property
    def loc_target(self) -> torch.Tensor:
        return self.joints[..., :2]


def match_centres(
    centres: torch.Tensor,
    batch_index: torch.Tensor,
    person_mask: torch.Tensor,
    gt_joints: Sequence[torch.Tensor],
    gt_box_areas: Sequence[torch.Tensor],
    gt_annotated: Sequence[torch.Tensor],
    max_match_dist: float = 0.8,
) -> CentreTargets:
    """Greedy matching of detected ``centres`` (M, 2) (image ``batch_index`` (M,), ``person_mask``
    (M,) 0 in ignore regions) to each image's GT people: ``gt_joints[b]`` (N_b, J+1, 3) with the
    centre last, ``gt_box_areas[b]`` (N_b,), ``gt_annotated[b]`` (N_b,) whether a person has
    keypoint annotations (only those are matched)."""
    m = centres.shape[0]
    k = gt_joints[0].shape[1] if gt_joints else 1
    device = centres.device
    joints = torch.zeros((m, k, 3), device=device)
    areas = torch.zeros((m,), device=device)
    is_tp = torch.zeros((m,), device=device)
    with torch.no_grad():
        flat_joints: list[torch.Tensor] = []
        flat_areas: list[torch.Tensor] = []
        owner: list[torch.Tensor] = []
        for b, (gj, ga, gn) in enumerate(zip(gt_joints, gt_box_areas, gt_annotated, strict=True)):
            use = gn.to(device) > 0
            flat_joints.append(gj.to(device)[use])
            flat_areas.append(ga.to(device)[use])
            owner.append(torch.full((int(use.sum()),), b, device=device, dtype=torch.long))
        if flat_joints and sum(int(j.shape[0]) for j in flat_joints) > 0:
            gj = torch.cat(flat_joints)
            ga = torch.cat(flat_areas)
            go = torch.cat(owner)
            d2 = ((centres[:, None, :].float() - gj[None, :, -1, :2]) ** 2).sum(-1)
            cost = 1 - torch.exp(-d2 / (2 * (2 * MATCH_SIGMA) ** 2 * (ga[None] * AREA_SCALE + EPS)))
            cost = torch.where(batch_index[:, None].to(device) == go[None], cost, torch.full_like(cost, float("inf")))
            cost = cost.clone()
            while True:
                best = cost.argmin()
                i, g = divmod(int(best), cost.shape[1])
                if not cost[i, g] <= max_match_dist:
                    break
                joints[i] = gj[g]
                areas[i] = ga[g]
                is_tp[i] = 1.0
                cost[i, :] = float("inf")
                cost[:, g] = float("inf")
    ignore = (person_mask.to(device) > 0).float()
    return CentreTargets(is_tp, ignore, joints, areas)


def group_losses(
    loc: torch.Tensor,
    vis: torch.Tensor,
    person: torch.Tensor,
    targets: CentreTargets,
    sigmas: Sequence[float],
    *,
    mask_vis_loss: bool = True,
) -> dict[str, torch.Tensor]:
    """Unweighted ``person_loss``, ``vis_loss``, ``loc_loss`` over every head: ``loc`` (H, M, J, 2)
    soft locations, ``vis`` (H, M, J) and ``person`` (H, M) logits for M centres."""
    j = loc.shape[2]
    used = targets.ignore > 0
    tp = (targets.is_tp > 0) & used
    vt = targets.vis_target[:, :j]
    lt = targets.loc_target[:, :j].to(loc.dtype)
    zero = (loc.sum() + vis.sum() + person.sum()) * 0.0
    person_losses = [
        focal_loss(person[h][used], targets.is_tp[used].to(person.dtype)).mean() if used.any() else zero
        for h in range(person.shape[0])
    ]
    loc_losses = []
    num = zero
    den = zero
    area = targets.box_area * AREA_SCALE
    for h in range(loc.shape[0]):
        sel = tp[:, None] & vt
        loc_losses.append((loc[h] - lt).abs()[sel].mean() if sel.any() else zero)
        mask = tp[:, None].expand(-1, j)
        if mask_vis_loss:
            with torch.no_grad():
                oks = joint_oks(loc[h].detach(), lt, area, sigmas)
            mask = mask & ~(vt & (oks < 0.5))
        w = mask.to(vis.dtype)
        num = num + (focal_loss(vis[h], vt.to(vis.dtype)) * w).sum()
        den = den + w.sum()
    n = loc.shape[0]
    return {
        "person_loss": sum(person_losses) / n,
        "vis_loss": num / den if float(den.detach()) > 0 else zero,
        "loc_loss": sum(loc_losses) / n,
    }


def _instances(batch: Batch, j: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    joints, areas, annotated = [], [], []
    for inst in batch.instances or [{} for _ in range(len(batch))]:
        kp = inst.get("keypoints_with_centre")
        if kp is None:
            kp = torch.zeros((0, j + 1, 3))
        joints.append(kp.float())
        areas.append(inst.get("box_area", torch.ones(kp.shape[0])).float())
        annotated.append(inst.get("annotated", torch.ones(kp.shape[0])).float())
    return joints, areas, annotated


def centergroup_losses(head: Any, outputs: Mapping[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    """The named, weighted losses of :meth:`CenterGroupHead.loss`."""
    for name in ("heatmaps_0", "heatmaps_1"):
        if name not in batch.targets:
            raise KeyError(f"CenterGroupHead.loss: batch.targets lacks {name!r} (encode with CenterGroupCodec); got {sorted(batch.targets)}")
    hm = heatmap_loss(
        [outputs["heatmaps_0"], outputs["heatmaps_1"]],
        [batch.targets["heatmaps_0"], batch.targets["heatmaps_1"]],
        [batch.targets["mask_0"], batch.targets["mask_1"]],
    ).mean()
    if head.stage == 1 or "group_loc" not in outputs:
        return {"heatmap_loss": hm}
    j = head.num_joints
    b, _, p = outputs["group_person"].shape
    keep = outputs["centre_keep"] > 0  # (B, P)
    xy = outputs["centre_xy"]
    mask_1 = batch.targets["mask_1"]
    h2, w2 = mask_1.shape[-2:]
    cx = (xy[..., 0] / 2).long().clamp(0, w2 - 1)
    cy = (xy[..., 1] / 2).long().clamp(0, h2 - 1)
    person_mask = torch.gather(mask_1.reshape(b, -1), 1, cy * w2 + cx)
    bi = torch.arange(b, device=xy.device)[:, None].expand(b, p)
    joints, areas, annotated = _instances(batch, j)
    targets = match_centres(xy[keep], bi[keep], person_mask[keep], joints, areas, annotated)
    loc = outputs["group_loc"].transpose(0, 1)[:, keep]  # (H, M, J, 2)
    vis = outputs["group_vis"].transpose(0, 1)[:, keep]
    person = outputs["group_person"].transpose(0, 1)[:, keep]
    losses = group_losses(loc, vis, person, targets, head.layout.sigmas)
    return {
        "heatmap_loss": LOSS_FACTORS["heatmap"] * hm,
        "person_loss": LOSS_FACTORS["person"] * losses["person_loss"],
        "vis_loss": LOSS_FACTORS["vis"] * losses["vis_loss"],
        "loc_loss": LOSS_FACTORS["loc"] * losses["loc_loss"],
    }
