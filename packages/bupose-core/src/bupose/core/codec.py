"""The codec protocol: one object that encodes training targets and decodes network outputs.

A head names its codec class in ``HeadSpec.codec``. The training engine builds it as
``Codec(layout, input_size, **codec_kwargs)``, sizes the augmentation with
:meth:`Codec.output_sizes`, calls :meth:`Codec.encode` on every augmented sample and batches the
result with :func:`bupose.core.batch.collate`; inference pipelines (and the conformance suite
:class:`bupose.core.testing.CodecContract`) call :meth:`Codec.decode` on batched outputs. Keeping
both directions in one object means a change of stride or sigma cannot make training and inference
disagree.

:class:`Codec` is the structural protocol; :class:`BaseCodec` is a base class implementing the
common parts (layout lookup, square input size, the sample-key check, input -> image pixels).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from .layouts import get_layout
from .poses import Poses
from .specs import LayoutSpec

__all__ = ["BaseCodec", "Codec", "Encoded", "MissingSampleKeyError", "image_points", "input_hw_of"]


class MissingSampleKeyError(ValueError):
    """An augmented sample lacks a key the codec's ``encode`` needs (one line naming it)."""


@dataclass(eq=False)
class Encoded(Mapping[str, torch.Tensor]):
    """The targets of one augmented sample.

    ``dense`` fixed-shape tensors (stacked over the batch into ``Batch.targets``); ``instances``
    per-person tensors with the number of people first (kept per image in ``Batch.instances``).
    As a mapping, an ``Encoded`` reads its dense targets (``enc["heatmap"]``, ``set(enc)``).
    """

    dense: dict[str, torch.Tensor]
    instances: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.dense[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.dense)

    def __len__(self) -> int:
        return len(self.dense)


@runtime_checkable
class Codec(Protocol):
    """What the engine, the pipelines and ``CodecContract`` use of a codec.

    - construction: ``Codec(layout, input_size, **options)`` (``input_size`` an int for a square
      training input, or (h, w));
    - ``sample_keys``: the augmented-sample keys :meth:`encode` needs (a sample lacking one is one
      clear :class:`MissingSampleKeyError` naming it);
    - ``output_fields``: dense target fields that are ideal network outputs (same name and shape as
      the head's output field, e.g. a heatmap), so that decoding them must give back the people;
    - :meth:`output_sizes`: the target-map size (h, w) per resolution name (``"1/4"``...);
    - :meth:`encode`: one augmented sample -> :class:`Encoded`;
    - :meth:`decode`: batched outputs + one meta per image -> one :class:`Poses` per image, in
      image pixels through ``meta["matrix"]`` (image -> input affine) when present, else in input
      pixels.
    """

    layout: LayoutSpec
    sample_keys: tuple[str, ...]
    output_fields: tuple[str, ...]

    def output_sizes(self, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, int]]: ...

    def encode(self, sample: Mapping[str, Any]) -> Encoded: ...

    def decode(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]]) -> list[Poses]: ...


def input_hw_of(input_size: int | Sequence[int]) -> tuple[int, int]:
    """``(h, w)`` of an input size given as an int (square) or a pair."""
    if isinstance(input_size, (int, np.integer)):
        return int(input_size), int(input_size)
    h, w = (int(v) for v in input_size)
    return h, w


def image_points(points: np.ndarray, meta: Mapping[str, Any] | None) -> np.ndarray:
    """``points`` (..., >=2) in input pixels -> image pixels through the inverse of ``meta["matrix"]``
    (2, 3) image -> input; unchanged (a copy) without a matrix. Columns after x, y are kept."""
    out = np.array(points, dtype=np.float64, copy=True)
    matrix = None if meta is None else meta.get("matrix")
    if matrix is None or out.size == 0:
        return out
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    xy = out[..., :2].reshape(-1, 2)
    out[..., :2] = (xy @ inv[:, :2].T + inv[:, 2]).reshape(out[..., :2].shape)
    return out


class BaseCodec:
    """A base for codecs: stores ``layout`` (a :class:`LayoutSpec`) and ``input_hw``; subclasses set
    ``sample_keys`` / ``output_fields`` and implement :meth:`output_sizes`, :meth:`encode` and
    :meth:`decode` (usually with :meth:`check_sample` first and :func:`image_points` last)."""

    sample_keys: ClassVar[tuple[str, ...]] = ("keypoints",)
    output_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, layout: str | LayoutSpec = "coco17", input_size: int | tuple[int, int] = 512) -> None:
        self.layout = get_layout(layout)
        self.input_hw = input_hw_of(input_size)
        if min(self.input_hw) <= 0:
            raise ValueError(f"{type(self).__name__}: input_size must be positive, got {input_size}")

    @property
    def num_joints(self) -> int:
        return self.layout.num_keypoints

    def check_sample(self, sample: Mapping[str, Any]) -> None:
        """One :class:`MissingSampleKeyError` naming every key of ``sample_keys`` that ``sample`` lacks."""
        missing = [k for k in self.sample_keys if k not in sample]
        if missing:
            raise MissingSampleKeyError(
                f"{type(self).__name__}.encode: the sample lacks {', '.join(map(repr, missing))} "
                f"(it needs {', '.join(self.sample_keys)}; has {', '.join(sorted(map(str, sample)))})"
            )

    def output_sizes(self, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        raise NotImplementedError

    def encode(self, sample: Mapping[str, Any]) -> Encoded:
        raise NotImplementedError

    def decode(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]]) -> list[Poses]:
        raise NotImplementedError
