"""Core built-in plugin registering core's grouper (``single_person``)."""

from __future__ import annotations

from collections.abc import Callable

from ..hookspecs import hookimpl
from ..specs import GrouperSpec


@hookimpl
def bupose_register_groupers(register: Callable[[GrouperSpec], None]) -> None:
    register(
        GrouperSpec(
            name="single_person",
            factory="bupose.core.grouping:SinglePersonGrouper",
            summary="the best candidate of each joint forms one person (any layout, no extra fields)",
        )
    )
