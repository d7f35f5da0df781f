"""Core built-in plugin registering the layouts of :mod:`bupose.core.layouts`."""

from __future__ import annotations

from collections.abc import Callable

from ..hookspecs import hookimpl
from ..layouts import COCO17, CROWDPOSE14
from ..specs import LayoutSpec


@hookimpl
def bupose_register_layouts(register: Callable[[LayoutSpec], None]) -> None:
    register(COCO17)
    register(CROWDPOSE14)
