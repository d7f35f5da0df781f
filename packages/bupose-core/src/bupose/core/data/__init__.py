"""Datasets (COCO-format keypoints: COCO, CrowdPose, OCHuman, synthetic), augmentation and the
synthetic scene generator.

- :func:`load_dataset` / :class:`KeypointDataset` — see :mod:`bupose.core.data.dataset` for the
  image-path rule and the spec forms (``path.json``, a folder with ``annotations.json``,
  ``coco:ROOT:SPLIT``, ``crowdpose:ROOT:SPLIT``, ``ochuman:ROOT:SPLIT``);
- :class:`~bupose.core.data.transforms.BottomUpRandomAffine`, :func:`~bupose.core.data.transforms.to_tensor`;
- :func:`bupose.core.data.synth.generate` — synthetic scenes (``bupose data synth``).

Importing this package does not import torch.
"""

from __future__ import annotations

from .dataset import DatasetError, KeypointDataset, collate_keep, load_dataset, resolve_spec

__all__ = ["DatasetError", "KeypointDataset", "collate_keep", "load_dataset", "resolve_spec"]
