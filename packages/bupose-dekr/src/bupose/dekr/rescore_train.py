"""Training DEKR's rescoring net (PredictOKSNet) from a trained model's predictions.

The official recipe (``tools/train_scorenet.py`` with data from ``valid.py`` and
``RESCORE.GET_DATA``): run the model over a training set, compute each final pose's features (the
same :func:`bupose.dekr.decode.rescore_features` the decoder feeds the net) and its best-match OKS
against the image's ground truth (targets exactly 1 are set to 0, as officially), then fit the net
with MSE and Adam (lr 1e-3, batch 1024, 20 epochs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bupose.core.algorithms.oks import oks_matrix

from .model import PredictOKSNet

__all__ = ["RescoreData", "best_match_oks", "collect_rescore_data", "oks_matrix", "train_rescore_net"]


def best_match_oks(
    dets: np.ndarray, gt_keypoints: np.ndarray, gt_areas: np.ndarray, gt_boxes: np.ndarray, sigmas: Sequence[float]
) -> np.ndarray:
    """(D,) the best OKS of each detection over the ground truths (0 without any), with the official
    quirk: a target of exactly 1 becomes 0."""
    m = oks_matrix(dets, gt_keypoints, gt_areas, gt_boxes, sigmas)
    best = m.max(axis=1) if m.shape[1] else np.zeros(m.shape[0])
    best[best == 1] = 0
    return best


@dataclass
class RescoreData:
    """Rescoring training pairs: ``features`` (M, F) float32 and ``targets`` (M,) float32 OKS."""

    features: np.ndarray
    targets: np.ndarray
    per_image: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def collect_rescore_data(
    predict: Callable[[np.ndarray], Any],
    samples: Iterable[Mapping[str, Any]],
    layout: str,
    sigmas: Sequence[float],
    *,
    progress: bool = True,
) -> RescoreData:
    """Run ``predict(image) -> Poses`` over dataset samples (``image``, ``keypoints``, ``areas``,
    ``bboxes``, optional ``iscrowd``) and make (features, best-match OKS) pairs."""
    from .decode import rescore_features

    feats: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    counts: list[int] = []
    items = list(samples) if not hasattr(samples, "__len__") else samples
    for sample in tqdm(items, desc="rescore data", disable=not progress):
        poses = predict(sample["image"])
        kps = np.asarray(poses.keypoints, dtype=np.float32)
        counts.append(kps.shape[0])
        if kps.shape[0] == 0:
            continue
        gt = np.asarray(sample["keypoints"], dtype=np.float64)
        crowd = np.asarray(sample.get("iscrowd", np.zeros(len(gt))), dtype=bool).reshape(-1)
        areas = np.asarray(sample["areas"], dtype=np.float64).reshape(-1)
        boxes = np.asarray(sample.get("bboxes", np.zeros((len(gt), 4))), dtype=np.float64).reshape(-1, 4)
        keep = ~crowd
        feats.append(rescore_features(kps, layout).astype(np.float32))
        targets.append(best_match_oks(kps, gt[keep], areas[keep], boxes[keep], sigmas).astype(np.float32))
    if not feats:
        raise ValueError("collect_rescore_data: the model predicted no pose on any image")
    return RescoreData(np.concatenate(feats), np.concatenate(targets), counts)


def train_rescore_net(
    data: RescoreData,
    *,
    epochs: int = 20,
    batch_size: int = 1024,
    lr: float = 1e-3,
    hidden: int = 256,
    net: PredictOKSNet | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[PredictOKSNet, list[float]]:
    """Fit PredictOKSNet (MSE, Adam) on rescoring data; returns the net (eval mode) and the mean
    loss of every epoch."""
    if len(data) == 0:
        raise ValueError("train_rescore_net: no training pairs")
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(data.features, dtype=np.float32)).to(device)
    y = torch.from_numpy(np.ascontiguousarray(data.targets, dtype=np.float32)).reshape(-1, 1).to(device)
    if net is None:
        torch.manual_seed(seed)
        net = PredictOKSNet(x.shape[1], hidden=hidden)
    net = net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()
    history: list[float] = []
    for _ in tqdm(range(epochs), desc="rescore epochs", disable=not progress):
        order = torch.randperm(x.shape[0], generator=g).to(device)
        total = 0.0
        for start in range(0, x.shape[0], batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
        history.append(total / x.shape[0])
    return net.eval(), history
