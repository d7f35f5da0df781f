"""Pure-PyTorch reference implementations of the named ops (always available, lowest priority)."""

from __future__ import annotations

from collections.abc import Callable

from ..hookspecs import hookimpl
from ..specs import OpSpec


@hookimpl
def bupose_register_ops(register: Callable[[OpSpec], None]) -> None:
    register(
        OpSpec(
            name="deform_conv2d",
            implementation="reference",
            priority=0,
            factory="bupose.core.ops.reference:deform_conv2d",
            summary="deformable convolution (DCNv1/v2), grid_sample based",
        )
    )
    register(
        OpSpec(
            name="ms_deform_attn",
            implementation="reference",
            priority=0,
            factory="bupose.core.ops.reference:ms_deform_attn",
            summary="multi-scale deformable attention (Deformable DETR), grid_sample based",
        )
    )
