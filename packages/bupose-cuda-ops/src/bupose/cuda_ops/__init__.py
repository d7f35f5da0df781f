"""bupose-cuda-ops: compiled deformable convolution and multi-scale deformable attention.

C++ (CPU, ``at::parallel_for``) and CUDA kernels for ``deform_conv2d`` and ``ms_deform_attn``,
forward and backward, registered with core's op lookup (``bupose.core.ops.get_op``) above core's
pure-PyTorch reference. Importing this package is cheap (no torch); the kernels load on first use.
If an extension failed to build or load, its availability check says why (``bupose info``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "deform_conv2d_cpp": "bupose.cuda_ops.functions",
    "deform_conv2d_cuda": "bupose.cuda_ops.functions",
    "ms_deform_attn_cpp": "bupose.cuda_ops.functions",
    "ms_deform_attn_cuda": "bupose.cuda_ops.functions",
    "cpp_available": "bupose.cuda_ops.availability",
    "cuda_available": "bupose.cuda_ops.availability",
    "build_status": "bupose.cuda_ops.availability",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bupose.cuda_ops' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
