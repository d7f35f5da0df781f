"""Frozen descriptions of the components plugins register.

A spec names a component, says which package provides it and how to build it. Specs never import
torch or the plugin's implementation modules: factories are ``"module:attr"`` strings that are
imported only when the component is built (``spec.load()``). Listing plugins is therefore cheap and
cannot fail because of a broken model file.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "BackboneSpec",
    "ComponentSpec",
    "DatasetSpec",
    "FeatureShape",
    "GrouperSpec",
    "HeadSpec",
    "InvalidSpecError",
    "LayoutSpec",
    "OpSpec",
    "SPEC_TYPES",
    "WeightsSpec",
    "import_object",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_.\-]*$")
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class InvalidSpecError(ValueError):
    """A plugin registered a spec that is malformed (bad name, bad factory string, bad facts)."""


def import_object(path: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    if not _FACTORY_RE.match(path):
        raise InvalidSpecError(f"expected 'module:attr', got {path!r}")
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class FeatureShape:
    """Channels and stride (input pixels per feature pixel) of one backbone output."""

    channels: int
    stride: int

    def __post_init__(self) -> None:
        if self.channels <= 0 or self.stride <= 0:
            raise InvalidSpecError(f"FeatureShape needs positive channels and stride, got {self}")


@dataclass(frozen=True, kw_only=True)
class ComponentSpec:
    """Common part of every spec: a name, a lazy factory, a summary and provenance.

    ``distribution`` and ``version`` are filled in by the plugin host when the spec is registered;
    plugins leave them empty.
    """

    kind: ClassVar[str] = "component"

    name: str
    factory: str | None = None
    summary: str = ""
    overrides: bool = False
    distribution: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InvalidSpecError` when a field is malformed."""
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise InvalidSpecError(
                f"{self.kind} name {self.name!r} must be lower-case letters, digits, '_', '-', '.'"
            )
        if self.factory is not None and not _FACTORY_RE.match(self.factory):
            raise InvalidSpecError(
                f"{self.kind} {self.name!r}: factory must be 'module:attr', got {self.factory!r}"
            )

    @property
    def key(self) -> str:
        """The registry key (the name; ops add their implementation)."""
        return self.name

    def load(self) -> Any:
        """Import and return the factory object."""
        if self.factory is None:
            raise InvalidSpecError(f"{self.kind} {self.name!r} has no factory")
        return import_object(self.factory)

    def with_provenance(self, distribution: str, version: str) -> ComponentSpec:
        """A copy that remembers which distribution registered it."""
        return dataclasses.replace(self, distribution=distribution, version=version)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description of the spec."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = {
                    k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
                    for k, v in value.items()
                }
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, kw_only=True)
class BackboneSpec(ComponentSpec):
    """A feature extractor.

    ``outputs`` declares every output the backbone returns (name -> channels and stride); the
    built module's ``output_shape()`` must return the same mapping. ``factory(**kwargs)`` builds an
    :class:`bupose.core.model.Backbone`. ``size_divisibility`` is detectron2's rule: the input
    height and width must be multiples of it (1 = any size); pipelines round their input sizes up to
    it and the built module exposes the same value.
    """

    kind: ClassVar[str] = "backbone"

    outputs: Mapping[str, FeatureShape] = field(default_factory=dict)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    size_divisibility: int = 1

    def validate(self) -> None:
        super().validate()
        if self.factory is None:
            raise InvalidSpecError(f"backbone {self.name!r} needs a factory")
        if not self.outputs:
            raise InvalidSpecError(f"backbone {self.name!r} must declare its outputs")
        for out_name, shape in self.outputs.items():
            if not isinstance(shape, FeatureShape):
                raise InvalidSpecError(
                    f"backbone {self.name!r}: output {out_name!r} must be a FeatureShape"
                )
        if isinstance(self.size_divisibility, bool) or not isinstance(self.size_divisibility, int) or (
            self.size_divisibility < 1
        ):
            raise InvalidSpecError(
                f"backbone {self.name!r}: size_divisibility must be a positive int, got {self.size_divisibility!r}"
            )


@dataclass(frozen=True, kw_only=True)
class HeadSpec(ComponentSpec):
    """A pose head.

    ``factory(input_shapes, layout, **kwargs)`` builds a :class:`bupose.core.model.Head` sized from
    the backbone's declared outputs. ``codec`` is the ``module:attr`` of the head's codec class (the
    one object that encodes training targets and decodes outputs); ``pipeline`` is the
    ``module:attr`` of the inference pipeline class (input preparation, test-time augmentation,
    decoding) and ``input_spec`` describes the head's resize rule in words. ``options`` is the
    ``module:attr`` of the dataclass of the pipeline's test-time options (see
    :mod:`bupose.core.options`; importing it must not import torch). ``grouper`` names the
    registered grouper that turns the pipeline's keypoint candidates into people (``None`` for heads
    that form people themselves); ``candidate_fields`` are the extra fields those candidates carry,
    and any grouper whose ``requires`` they cover may replace the default (see
    :mod:`bupose.core.grouping`). ``layouts`` lists supported layouts (the first is the default).
    """

    kind: ClassVar[str] = "head"

    codec: str | None = None
    pipeline: str | None = None
    options: str | None = None
    grouper: str | None = None
    candidate_fields: tuple[str, ...] = ()
    input_spec: str | None = None
    layouts: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        super().validate()
        if self.factory is None:
            raise InvalidSpecError(f"head {self.name!r} needs a factory")
        if not self.layouts:
            raise InvalidSpecError(f"head {self.name!r} must list the layouts it supports")
        for attr in ("codec", "pipeline", "options"):
            value = getattr(self, attr)
            if value is not None and not _FACTORY_RE.match(value):
                raise InvalidSpecError(f"head {self.name!r}: {attr} must be 'module:attr'")
        if self.grouper is not None and not _NAME_RE.match(str(self.grouper)):
            raise InvalidSpecError(f"head {self.name!r}: grouper must be a registered grouper name")
        if self.candidate_fields and self.grouper is None:
            raise InvalidSpecError(f"head {self.name!r}: candidate_fields need a default grouper")
        if any(not isinstance(f, str) or not f.isidentifier() for f in self.candidate_fields):
            raise InvalidSpecError(f"head {self.name!r}: candidate_fields must be identifiers")

    def load_options(self) -> type | None:
        """The options dataclass (imported; torch-free by contract), or ``None`` when none is declared."""
        return None if self.options is None else import_object(self.options)


@dataclass(frozen=True, kw_only=True)
class GrouperSpec(ComponentSpec):
    """Groups keypoint candidates into people: ``factory(layout, **options)`` returns a callable
    ``grouper(candidates) -> Poses`` (:mod:`bupose.core.grouping`). ``requires`` names the extra
    candidate fields it needs (e.g. ``("limb_heatmaps",)``); ``layouts`` restricts it to some
    layouts (empty = any)."""

    kind: ClassVar[str] = "grouper"

    requires: tuple[str, ...] = ()
    layouts: tuple[str, ...] = ()

    def validate(self) -> None:
        super().validate()
        if self.factory is None:
            raise InvalidSpecError(f"grouper {self.name!r} needs a factory")
        if any(not isinstance(f, str) or not f.isidentifier() for f in self.requires):
            raise InvalidSpecError(f"grouper {self.name!r}: requires must be identifiers")


@dataclass(frozen=True, kw_only=True)
class LayoutSpec(ComponentSpec):
    """A keypoint layout: names, horizontal-flip permutation, OKS sigmas, skeleton and colours.

    Pure data: no factory is needed. ``colors`` are RGB triples, one per skeleton edge.
    """

    kind: ClassVar[str] = "layout"

    keypoints: tuple[str, ...] = ()
    flip_index: tuple[int, ...] = ()
    sigmas: tuple[float, ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    colors: tuple[tuple[int, int, int], ...] = ()

    def validate(self) -> None:
        super().validate()
        n = len(self.keypoints)
        if n == 0:
            raise InvalidSpecError(f"layout {self.name!r} has no keypoints")
        if sorted(self.flip_index) != list(range(n)):
            raise InvalidSpecError(
                f"layout {self.name!r}: flip_index must be a permutation of 0..{n - 1}"
            )
        if any(self.flip_index[self.flip_index[i]] != i for i in range(n)):
            raise InvalidSpecError(f"layout {self.name!r}: flip_index must be an involution")
        if len(self.sigmas) != n or any(s <= 0 for s in self.sigmas):
            raise InvalidSpecError(f"layout {self.name!r}: needs {n} positive OKS sigmas")
        for a, b in self.skeleton:
            if not (0 <= a < n and 0 <= b < n):
                raise InvalidSpecError(f"layout {self.name!r}: skeleton edge ({a},{b}) out of range")
        if self.colors and len(self.colors) != len(self.skeleton):
            raise InvalidSpecError(f"layout {self.name!r}: one colour per skeleton edge")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def flip_index_with_center(self) -> tuple[int, ...]:
        """The flip permutation for this layout plus a trailing person-centre channel."""
        return (*self.flip_index, len(self.keypoints))


@dataclass(frozen=True, kw_only=True)
class DatasetSpec(ComponentSpec):
    """A dataset format. ``factory(root_or_annotations, **options)`` builds the dataset."""

    kind: ClassVar[str] = "dataset"

    layout: str = "coco17"

    def validate(self) -> None:
        super().validate()
        if self.factory is None:
            raise InvalidSpecError(f"dataset {self.name!r} needs a factory")


@dataclass(frozen=True, kw_only=True)
class OpSpec(ComponentSpec):
    """One implementation of a named kernel (``deform_conv2d``, ``ms_deform_attn``...).

    Several implementations share a ``name``; the op lookup takes the highest ``priority`` one that
    supports the tensor's device type and whose ``available`` check (``module:attr`` returning
    ``(ok, reason)``) passes. ``implementation`` names the variant: ``reference``, ``cpp``,
    ``cuda``...
    """

    kind: ClassVar[str] = "op"

    implementation: str = "reference"
    priority: int = 0
    devices: tuple[str, ...] = ("cpu", "cuda")
    available: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.implementation}"

    def validate(self) -> None:
        super().validate()
        if self.factory is None:
            raise InvalidSpecError(f"op {self.name!r} needs a factory")
        if self.available is not None and not _FACTORY_RE.match(self.available):
            raise InvalidSpecError(f"op {self.name!r}: available must be 'module:attr'")

    def check_available(self) -> tuple[bool, str]:
        """Run the availability check: ``(True, "")`` or ``(False, why)``."""
        if self.available is None:
            return True, ""
        try:
            ok, reason = import_object(self.available)()
        except Exception as exc:  # noqa: BLE001 - any failure means "not available"
            return False, f"{type(exc).__name__}: {exc}"
        return bool(ok), str(reason)


_HEX_RE = re.compile(r"^[0-9a-f]+$")
_NAME_HASH_RE = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]")


@dataclass(frozen=True, kw_only=True)
class WeightsSpec(ComponentSpec):
    """A known checkpoint (official or bupose): where users get it, how to load it, and its provenance.

    ``file_names`` are the names the file is distributed under; ``converter`` (the factory) is a
    ``module:attr`` callable ``(state_dict) -> state_dict`` in bupose key layout, strict.

    Provenance (shown by ``bupose list weights``, written by ``bupose convert`` into the safetensors
    metadata; leave a field at its default when the fact is not known, never guess):

    - ``sha256``: the full hex digest of the official file (every name in ``file_names``), or ``None``
      when unknown; ``hash_in_name``: the file names end in ``-<hex>.<ext>``, the first hex digits of
      the file's sha256 (the torch.hub / OpenMMLab naming convention), which are then checked;
    - ``size_bytes``: the official file's size;
    - ``source_page``: the page that lists the file (``source`` says where exactly);
    - ``licence``: the licence status of the weights as distributed, e.g. ``"MIT"`` or
      ``"none stated (no licence file in the official repository)"``;
    - ``paper_ap``: reported AP, ``(("COCO val2017, single scale, flip", 68.0), ...)``, in percent.
    """

    kind: ClassVar[str] = "weights"

    head: str = ""
    backbone: str = ""
    layout: str = ""
    file_names: tuple[str, ...] = ()
    source: str = ""
    role: str = "model"
    sha256: str | None = None
    hash_in_name: bool = False
    size_bytes: int | None = None
    source_page: str = ""
    licence: str = ""
    paper_ap: tuple[tuple[str, float], ...] = ()

    def validate(self) -> None:
        super().validate()
        if not self.file_names:
            raise InvalidSpecError(f"weights {self.name!r} need at least one file name")
        if self.sha256 is not None and (len(self.sha256) != 64 or not _HEX_RE.match(self.sha256)):
            raise InvalidSpecError(f"weights {self.name!r}: sha256 must be 64 lower-case hex digits, got {self.sha256!r}")
        if self.hash_in_name:
            bad = [f for f in self.file_names if not _NAME_HASH_RE.search(f)]
            if bad:
                raise InvalidSpecError(
                    f"weights {self.name!r}: hash_in_name is set but {', '.join(bad)} carry no '-<hex>.' digest prefix"
                )
        if self.size_bytes is not None and (not isinstance(self.size_bytes, int) or self.size_bytes <= 0):
            raise InvalidSpecError(f"weights {self.name!r}: size_bytes must be a positive int, got {self.size_bytes!r}")
        for entry in self.paper_ap:
            if (
                not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[0], str)
                or not isinstance(entry[1], (int, float)) or not 0 <= entry[1] <= 100
            ):  # fmt: skip
                raise InvalidSpecError(
                    f"weights {self.name!r}: paper_ap entries must be (setting, AP in percent), got {entry!r}"
                )

    def expected_sha256(self, file_name: str) -> str | None:
        """The known sha256 of ``file_name`` (one of ``file_names``): the full digest, the prefix its name
        carries (``hash_in_name``), or ``None`` when unknown."""
        if file_name not in self.file_names:
            return None
        if self.sha256 is not None:
            return self.sha256
        if self.hash_in_name:
            m = _NAME_HASH_RE.search(file_name)
            return m.group(1) if m else None
        return None


SPEC_TYPES: dict[str, type[ComponentSpec]] = {
    "backbones": BackboneSpec,
    "heads": HeadSpec,
    "groupers": GrouperSpec,
    "layouts": LayoutSpec,
    "datasets": DatasetSpec,
    "ops": OpSpec,
    "weights": WeightsSpec,
}
"""Registry kind (plural, as in ``bupose list KIND``) -> spec class."""
