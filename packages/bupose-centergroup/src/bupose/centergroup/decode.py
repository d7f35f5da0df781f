"""CenterGroup decoding: flip-back and merge of the two branches, pose scores, ``adjust``, back-projection.

Per image, predictions are dicts of tensors over the kept centres (P) and prediction heads (H):
``loc`` / ``hard_loc`` (H, P, J, 2), ``vis`` (H, P, J) and ``person`` (H, P) logits.

- :func:`flip_back`: the flipped branch's predictions in the original frame (joints re-indexed by
  ``flip_index``, ``x -> W - x - 1``).
- :func:`merge_branches`: personness and visibility logits averaged; locations from the branch with
  the higher visibility logit per joint (ties: the first branch). Branches that kept different
  numbers of centres cannot be merged: :class:`MergeError` (the pipeline then uses the unflipped
  branch, as the official code does, and warns).
- :func:`pose_scores`: the official ``assign_pose_conf`` rule.
- :func:`adjust`: mmpose ``HeatmapParser.adjust`` (±0.25 towards the higher neighbour, then +0.5) on
  joints with visibility > 0.
- :func:`decode_poses`: all of it for one image -> (P, J, 4) ``[x, y, vis, vis]`` in input pixels +
  scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from bupose.core.algorithms.maps import quarter_offset

__all__ = ["MergeError", "adjust", "decode_poses", "flip_back", "merge_branches", "pose_scores", "select"]

Preds = dict[str, torch.Tensor]


class MergeError(ValueError):
    """The two flip-test branches kept different numbers of centres."""


def select(preds: Mapping[str, torch.Tensor], keep: torch.Tensor) -> Preds:
    """The kept centre slots ``keep`` (P_all,) of one image's (H, P_all, ...) predictions."""
    return {k: v[:, keep] for k, v in preds.items()}


def flip_back(preds: Mapping[str, torch.Tensor], flip_index: Sequence[int], width: int) -> Preds:
    """Predictions of the mirrored image in the original frame (input width ``width``)."""
    idx = list(flip_index)
    out: Preds = {}
    for key, value in preds.items():
        if key in ("loc", "hard_loc"):
            v = value[:, :, idx].clone()
            v[..., 0] = width - v[..., 0] - 1
            out[key] = v
        elif key == "vis":
            out[key] = value[:, :, idx]
        else:
            out[key] = value
    return out


def merge_branches(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> Preds:
    """Merge the image branch ``a`` with the flipped-back branch ``b`` per person index."""
    if a["person"].shape != b["person"].shape:
        raise MergeError(
            f"the flip-test branches kept {a['person'].shape[-1]} and {b['person'].shape[-1]} centres"
        )
    take_b = b["vis"] > a["vis"]
    return {
        "person": (a["person"] + b["person"]) / 2,
        "vis": (a["vis"] + b["vis"]) / 2,
        "loc": torch.where(take_b[..., None], b["loc"], a["loc"]),
        "hard_loc": torch.where(take_b[..., None], b["hard_loc"], a["hard_loc"]),
    }


def pose_scores(vis: torch.Tensor, person: torch.Tensor, thresh: float = 0.5, top: int = 5) -> torch.Tensor:
    """Official ``assign_pose_conf``: joints with vis > ``thresh`` or vis >= the person's
    ``top``-th largest count; score = their mean vis (1e-9 in the denominator) when person >
    ``thresh``, else the person probability. ``vis`` (P, J), ``person`` (P,) probabilities."""
    if vis.shape[0] == 0:
        return person.clone()
    k = min(top, vis.shape[1])
    kth = vis.topk(k, dim=1).values[:, -1:]
    counted = ((vis > thresh) | (vis >= kth)).to(vis.dtype)
    mean = (vis * counted).sum(dim=1) / (counted.sum(dim=1) + 1e-9)
    return torch.where(person > thresh, mean, person)


def adjust(xy: torch.Tensor, vis: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
    """mmpose ``adjust`` of (P, J, 2) integer-pixel joints on (J, H, W) heatmaps: joints with
    ``vis > 0`` move 0.25 towards the higher neighbour (``-0.25`` on ties) and get +0.5."""
    if xy.shape[0] == 0:
        return xy.clone()
    x = xy[..., 0].transpose(0, 1)  # (J, P)
    y = xy[..., 1].transpose(0, 1)
    nx, ny = quarter_offset(heatmaps, x, y, tie="minus", shift=0.5)
    moved = torch.stack([nx, ny], dim=-1).transpose(0, 1).to(xy.dtype)
    return torch.where((vis > 0)[..., None], moved, xy)


def decode_poses(
    preds: Mapping[str, torch.Tensor],
    heatmaps: torch.Tensor | None,
    *,
    layer: int = -1,
    conf_thresh: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(poses (P, J, 4) [x, y, vis, vis] in input pixels, scores (P,))`` from one image's merged
    predictions, with ``adjust`` on ``heatmaps`` (J, H, W) unless it is None."""
    xy = preds["hard_loc"][layer].float()
    vis = torch.sigmoid(preds["vis"][layer].float())
    person = torch.sigmoid(preds["person"][layer].float())
    scores = pose_scores(vis, person, conf_thresh)
    if heatmaps is not None:
        xy = adjust(xy, vis, heatmaps.float())
    poses = torch.cat([xy, vis[..., None], vis[..., None]], dim=-1)
    return poses, scores
