"""Groupers: per-image keypoint candidates -> people.

A head whose network finds joints but not people (heatmap peaks plus, say, limb maps or embedding
tags) hands its pipeline's :class:`Candidates` to a *grouper*, a registered component
(``bupose_register_groupers``, :class:`~bupose.core.specs.GrouperSpec`) built as
``factory(layout, **options)`` and called as ``grouper(candidates) -> Poses``.

Which grouper runs is declared, not hard-wired: ``HeadSpec.grouper`` names the head's default and
``HeadSpec.candidate_fields`` the extra fields its candidates carry; a grouper lists the fields it
needs in ``GrouperSpec.requires``. Any registered grouper whose needs the head's candidates cover can
replace the default (``bupose run --grouper NAME``). Heads that form people themselves (DEKR regresses
whole poses, CenterGroup groups with a learned module) declare no grouper and accept no choice.

Core ships one grouper, ``single_person`` (:class:`SinglePersonGrouper`): the best candidate of each
joint forms the one person of the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .layouts import get_layout
from .poses import Poses
from .specs import GrouperSpec, HeadSpec, LayoutSpec

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Registry

__all__ = [
    "Candidates",
    "Grouper",
    "GroupingError",
    "SinglePersonGrouper",
    "build_grouper",
    "check_candidates",
    "compatible_groupers",
    "resolve_grouper",
]


class GroupingError(ValueError):
    """A grouper that cannot be used: the head takes none, or its candidates lack a needed field."""


@dataclass
class Candidates:
    """Keypoint candidates of one image, in image pixels.

    ``xy[j]`` (K_j, 2) and ``scores[j]`` (K_j,) are joint ``j``'s candidates (K_j may be 0).
    ``fields`` holds optional per-candidate extras by name, each a list of J arrays whose first
    dimension is K_j (e.g. ``"tags"``: (K_j, D) associative-embedding tags). ``maps`` holds optional
    per-image dense extras by name, each (C, h, w) with map pixel (x, y) at image pixel
    ``(x * map_stride, y * map_stride)`` (e.g. ``"limb_heatmaps"``: one channel per limb, which a
    limb-assembly grouper samples along candidate pairs). ``image_size`` is (h, w) when known.
    """

    layout: str
    xy: list[np.ndarray]
    scores: list[np.ndarray]
    fields: dict[str, list[np.ndarray]] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    map_stride: float = 1.0
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if len(self.xy) != len(self.scores):
            raise ValueError(f"Candidates: {len(self.xy)} xy arrays but {len(self.scores)} score arrays")
        self.xy = [np.asarray(a, dtype=np.float64).reshape(-1, 2) for a in self.xy]
        self.scores = [np.asarray(s, dtype=np.float64).reshape(-1) for s in self.scores]
        for j, (a, s) in enumerate(zip(self.xy, self.scores, strict=True)):
            if a.shape[0] != s.shape[0]:
                raise ValueError(f"Candidates: joint {j} has {a.shape[0]} positions but {s.shape[0]} scores")
        for name, arrays in self.fields.items():
            if len(arrays) != len(self.xy):
                raise ValueError(f"Candidates field {name!r}: {len(arrays)} arrays for {len(self.xy)} joints")
            for j, arr in enumerate(arrays):
                if np.asarray(arr).shape[:1] != (self.xy[j].shape[0],):
                    raise ValueError(
                        f"Candidates field {name!r}, joint {j}: first dimension must be {self.xy[j].shape[0]}"
                    )
        for name, m in self.maps.items():
            if np.asarray(m).ndim != 3:
                raise ValueError(f"Candidates map {name!r} must be (C, h, w), got shape {np.asarray(m).shape}")
        if self.map_stride <= 0:
            raise ValueError(f"Candidates.map_stride must be positive, got {self.map_stride}")

    @property
    def num_joints(self) -> int:
        return len(self.xy)

    def provides(self) -> set[str]:
        """Names of the extra fields and maps these candidates carry."""
        return set(self.fields) | set(self.maps)


@runtime_checkable
class Grouper(Protocol):
    """What a registered grouper is: ``grouper(candidates) -> Poses`` for one image."""

    def __call__(self, candidates: Candidates) -> Poses: ...  # pragma: no cover - protocol


class SinglePersonGrouper:
    """The best-scoring candidate of each joint forms one person (zero people without candidates).

    A joint without a candidate (or whose best score is below ``min_score``) is (0, 0, 0); the person
    score is the mean of the J joint scores, missing joints counting 0.
    """

    def __init__(self, layout: str | LayoutSpec, *, min_score: float | None = None) -> None:
        self.layout = get_layout(layout)
        self.min_score = None if min_score is None else float(min_score)

    def __call__(self, candidates: Candidates) -> Poses:
        j = self.layout.num_keypoints
        if candidates.num_joints != j:
            raise ValueError(
                f"single_person grouper: layout {self.layout.name} has {j} joints, candidates have "
                f"{candidates.num_joints}"
            )
        person = np.zeros((j, 3))
        found = False
        for k, (xy, scores) in enumerate(zip(candidates.xy, candidates.scores, strict=True)):
            if scores.size == 0:
                continue
            best = int(np.argmax(scores))
            if self.min_score is not None and scores[best] < self.min_score:
                continue
            person[k] = (xy[best, 0], xy[best, 1], scores[best])
            found = True
        if not found:
            return Poses.empty(j, self.layout.name)
        return Poses(person[None], np.array([person[:, 2].mean()]), self.layout.name)


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from .plugins import get_registry

    return get_registry()


def build_grouper(
    name: str, layout: str | LayoutSpec, *, registry: Registry | None = None, **options: Any
) -> Grouper:
    """Build the registered grouper ``name`` for ``layout``; unknown names raise
    :class:`~bupose.core.plugins.UnknownComponentError` (what is installed, the closest name)."""
    spec = _registry(registry).get("groupers", name)
    assert isinstance(spec, GrouperSpec)
    lay = get_layout(layout)
    if spec.layouts and lay.name not in spec.layouts:
        raise GroupingError(
            f"grouper {name!r} supports layouts {', '.join(spec.layouts)}, not {lay.name!r}"
        )
    return spec.load()(lay, **options)


def _head_spec(head: str | HeadSpec, registry: Registry) -> HeadSpec:
    if isinstance(head, HeadSpec):
        return head
    spec = registry.get("heads", head)
    assert isinstance(spec, HeadSpec)
    return spec


def compatible_groupers(
    head: str | HeadSpec, layout: str | None = None, *, registry: Registry | None = None
) -> list[str]:
    """Registered groupers that can group ``head``'s candidates (needs covered, layout supported)."""
    reg = _registry(registry)
    spec = _head_spec(head, reg)
    if spec.grouper is None:
        return []
    provided = set(spec.candidate_fields)
    out = []
    for name in reg.names("groupers"):
        g = reg.components["groupers"][name]
        assert isinstance(g, GrouperSpec)
        if set(g.requires) <= provided and (layout is None or not g.layouts or layout in g.layouts):
            out.append(name)
    return out


def resolve_grouper(
    head: str | HeadSpec,
    choice: str | None,
    layout: str | LayoutSpec,
    *,
    registry: Registry | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[Grouper | None, GrouperSpec | None]:
    """The grouper a head's pipeline uses: ``choice`` when given (checked against the head's
    candidates), else the head's default; ``(None, None)`` for heads that form people themselves.

    Raises :class:`GroupingError` when ``choice`` is given for a head without a grouper or needs
    candidate fields the head does not provide, and
    :class:`~bupose.core.plugins.UnknownComponentError` for an unregistered name.
    """
    reg = _registry(registry)
    spec = _head_spec(head, reg)
    lay = get_layout(layout)
    if spec.grouper is None:
        if choice is not None:
            raise GroupingError(
                f"head {spec.name!r} takes no grouper (it forms people itself), so --grouper {choice} "
                "cannot apply; see `bupose list heads --verbose`"
            )
        return None, None
    name = choice if choice is not None else spec.grouper
    gspec = reg.get("groupers", name)
    assert isinstance(gspec, GrouperSpec)
    missing = sorted(set(gspec.requires) - set(spec.candidate_fields))
    if missing:
        usable = compatible_groupers(spec, lay.name, registry=reg)
        raise GroupingError(
            f"grouper {name!r} needs candidate field(s) {', '.join(missing)}, which head {spec.name!r} "
            f"does not provide (it provides: {', '.join(spec.candidate_fields) or 'positions and scores only'}); "
            f"groupers that work with it: {', '.join(usable) or 'none'}"
        )
    return build_grouper(name, lay, registry=reg, **dict(options or {})), gspec


def check_candidates(candidates: Candidates, requires: Sequence[str], grouper: str) -> None:
    """Raise :class:`GroupingError` when ``candidates`` lack a field the grouper needs."""
    missing = sorted(set(requires) - candidates.provides())
    if missing:
        raise GroupingError(
            f"grouper {grouper!r} needs candidate field(s) {', '.join(missing)}; the pipeline gave "
            f"{', '.join(sorted(candidates.provides())) or 'positions and scores only'}"
        )
