"""Named kernels chosen by priority and device.

Plugins register implementations of an op name (``deform_conv2d``, ``ms_deform_attn``) through
``bupose_register_ops``. :func:`get_op` returns the highest-priority implementation that supports the
device type and whose availability check passes. ``BUPOSE_OPS=reference`` (or any implementation
name) forces that implementation everywhere, for debugging.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..plugins import UnknownComponentError, get_registry
from ..specs import OpSpec

__all__ = ["OpChoice", "OpUnavailableError", "get_op", "op_choices", "op_status", "warn_if_reference"]


class OpUnavailableError(RuntimeError):
    """No registered implementation of an op can run on the requested device."""


@dataclass(frozen=True)
class OpChoice:
    """One implementation and whether it can be used here."""

    spec: OpSpec
    available: bool
    reason: str


@functools.cache
def _check(spec: OpSpec) -> tuple[bool, str]:
    return spec.check_available()


def op_choices(name: str) -> list[OpChoice]:
    """Every registered implementation of ``name``, best first, with availability."""
    registry = get_registry()
    specs = [s for s in registry.components["ops"].values() if isinstance(s, OpSpec) and s.name == name]
    if not specs:
        raise UnknownComponentError(registry.unknown_message("ops", name))
    specs.sort(key=lambda s: (-s.priority, s.implementation))
    return [OpChoice(s, *_check(s)) for s in specs]


def _device_type(device: Any) -> str:
    if device is None:
        return "cpu"
    if isinstance(device, str):
        return device.split(":")[0]
    return str(getattr(device, "type", device))


def _select(name: str, device_type: str) -> OpSpec:
    forced = os.environ.get("BUPOSE_OPS", "").strip()
    choices = op_choices(name)
    if forced:
        for c in choices:
            if c.spec.implementation == forced:
                if not c.available:
                    raise OpUnavailableError(
                        f"BUPOSE_OPS={forced} but {name}/{forced} is unavailable: {c.reason}"
                    )
                return c.spec
        raise OpUnavailableError(
            f"BUPOSE_OPS={forced} but {name} has no implementation {forced!r}; "
            f"registered: {', '.join(c.spec.implementation for c in choices)}"
        )
    for c in choices:
        if device_type in c.spec.devices and c.available:
            return c.spec
    reasons = "; ".join(
        f"{c.spec.implementation}: {c.reason or 'does not support ' + device_type}" for c in choices
    )
    raise OpUnavailableError(f"no implementation of {name} runs on {device_type} ({reasons})")


@functools.cache
def _load(name: str, device_type: str, forced: str) -> tuple[OpSpec, Callable[..., Any]]:
    spec = _select(name, device_type)
    return spec, spec.load()


def get_op(name: str, device: Any = None) -> Callable[..., Any]:
    """The best available implementation of op ``name`` for ``device`` (a torch device or str)."""
    return _load(name, _device_type(device), os.environ.get("BUPOSE_OPS", "").strip())[1]


def selected_implementation(name: str, device: Any = None) -> str:
    """The implementation name :func:`get_op` would use for ``device``."""
    return _load(name, _device_type(device), os.environ.get("BUPOSE_OPS", "").strip())[0].implementation


REFERENCE_FIX = (
    "install the compiled kernels with `pip install --no-build-isolation bupose-cuda-ops` into this "
    "environment (it needs torch at build time); `bupose info` says why they are unavailable"
)


def warn_if_reference(name: str, device: Any = None) -> bool:
    """Warn once per (op, device type) when :func:`get_op` would run the slow pure-PyTorch
    reference of ``name`` (unless ``BUPOSE_OPS`` chose it). Returns whether it is the reference."""
    try:
        impl = selected_implementation(name, device)
    except (OpUnavailableError, UnknownComponentError):
        return False
    if impl != "reference":
        return False
    if not os.environ.get("BUPOSE_OPS", "").strip():
        _warn_reference_once(name, _device_type(device))
    return True


@functools.cache
def _warn_reference_once(name: str, device_type: str) -> None:
    others = [
        f"{c.spec.implementation}: {c.reason}"
        for c in op_choices(name)
        if c.spec.implementation != "reference" and device_type in c.spec.devices and not c.available
    ]
    why = "; ".join(others) if others else "no compiled implementation is installed"
    warnings.warn(
        f"{name} on {device_type}: using the slow pure-PyTorch reference implementation ({why}); "
        f"{REFERENCE_FIX}",
        RuntimeWarning,
        stacklevel=4,
    )


def op_status() -> dict[str, list[dict[str, Any]]]:
    """For each op name: its implementations, priority, devices, availability and reason."""
    registry = get_registry()
    names = sorted({s.name for s in registry.components["ops"].values()})
    return {
        n: [
            {
                "implementation": c.spec.implementation,
                "priority": c.spec.priority,
                "devices": list(c.spec.devices),
                "available": c.available,
                "reason": c.reason,
                "distribution": c.spec.distribution,
            }
            for c in op_choices(n)
        ]
        for n in names
    }


def clear_op_cache() -> None:
    """Forget cached selections (after the registry or ``BUPOSE_OPS`` changes)."""
    _load.cache_clear()
    _check.cache_clear()
    _warn_reference_once.cache_clear()
