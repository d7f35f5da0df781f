"""bupose plugin: registers the C++ and CUDA implementations of the named ops."""

from __future__ import annotations

from collections.abc import Callable

from bupose.core import OpSpec, hookimpl

_OPS = {
    "deform_conv2d": "deformable convolution (DCNv1/v2)",
    "ms_deform_attn": "multi-scale deformable attention (Deformable DETR)",
}


@hookimpl
def bupose_register_ops(register: Callable[[OpSpec], None]) -> None:
    for name, what in _OPS.items():
        register(
            OpSpec(
                name=name,
                implementation="cpp",
                priority=10,
                devices=("cpu",),
                factory=f"bupose.cuda_ops.functions:{name}_cpp",
                available="bupose.cuda_ops.availability:cpp_available",
                summary=f"{what}, C++ CPU kernels",
            )
        )
        register(
            OpSpec(
                name=name,
                implementation="cuda",
                priority=20,
                devices=("cuda",),
                factory=f"bupose.cuda_ops.functions:{name}_cuda",
                available="bupose.cuda_ops.availability:cuda_available",
                summary=f"{what}, CUDA kernels",
            )
        )
