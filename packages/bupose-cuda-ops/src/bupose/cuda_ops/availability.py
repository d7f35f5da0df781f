"""Whether the compiled extensions can be used here, and if not, why.

The install records each extension's build outcome in ``_build_status.json`` beside this file
(see setup.py). The checks below return ``(True, "")`` or ``(False, reason)``; the reason is what
``bupose info`` prints.
"""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

STATUS_FILE = Path(__file__).with_name("_build_status.json")
EXTENSIONS = {"cpp": "_C", "cuda": "_C_cuda"}

__all__ = ["ExtensionUnavailableError", "build_status", "cpp_available", "cuda_available", "load_extension"]


class ExtensionUnavailableError(RuntimeError):
    """A compiled extension was not built or cannot be loaded; the message says why."""


def build_status(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The recorded build outcome per extension (``{"_C": {"built": bool, "reason": str}}``).

    Empty when no record exists (e.g. a source checkout that was never built).
    """
    path = STATUS_FILE if path is None else path
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        return {"_error": {"built": False, "reason": f"unreadable build record {path}: {exc}"}}
    return data if isinstance(data, dict) else {}


def _import(short: str, package: str = __package__ or "bupose.cuda_ops") -> ModuleType:
    import torch  # noqa: F401 - torch's shared libraries must be loaded before the extension

    return importlib.import_module(f"{package}.{short}")


@functools.cache
def _probe(short: str) -> tuple[ModuleType | None, str]:
    try:
        return _import(short), ""
    except Exception as exc:  # noqa: BLE001 - any import failure means "unavailable"
        return None, explain_failure(short, exc, build_status())


def explain_failure(short: str, exc: BaseException, status: dict[str, dict[str, Any]]) -> str:
    """Why extension ``short`` cannot be used, from its build record and the import error."""
    record = status.get(short)
    if record is not None and not record.get("built", False):
        return str(record.get("reason") or "not built")
    if record is None and not status:
        return (
            f"extension {short} was never built (no build record; install bupose-cuda-ops with "
            f"`pip install --no-build-isolation`); import error: {type(exc).__name__}: {exc}"
        )
    if record is None:
        return f"extension {short} was not built; import error: {type(exc).__name__}: {exc}"
    return f"extension {short} was built but does not load: {type(exc).__name__}: {exc}"


def load_extension(kind: str) -> ModuleType:
    """The compiled module for ``kind`` (``"cpp"`` or ``"cuda"``); raises with the reason."""
    module, reason = _probe(EXTENSIONS[kind])
    if module is None:
        raise ExtensionUnavailableError(f"bupose-cuda-ops {kind} kernels are unavailable: {reason}")
    return module


def cpp_available() -> tuple[bool, str]:
    """``(True, "")`` when the C++ CPU extension loads, else ``(False, why)``."""
    module, reason = _probe(EXTENSIONS["cpp"])
    return module is not None, reason


def cuda_available() -> tuple[bool, str]:
    """``(True, "")`` when the CUDA extension loads and a CUDA device is present."""
    module, reason = _probe(EXTENSIONS["cuda"])
    if module is None:
        return False, reason
    import torch

    if not torch.cuda.is_available():
        return False, "CUDA extension built, but no CUDA device is available"
    return True, ""
