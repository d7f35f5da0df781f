"""The one ``--device`` rule of ``bupose run``, ``eval`` and ``train``: ``auto`` (the default) is the
first CUDA device when PyTorch sees one, else the CPU; ``cuda`` / ``cuda:N`` asked for where CUDA is
absent is a one-line error."""

from __future__ import annotations

__all__ = ["DEVICE_HELP", "resolve_device"]

DEVICE_HELP = "auto (default: cuda when available, else cpu), cpu, cuda or cuda:N."


def resolve_device(requested: str | None) -> tuple[str, str]:
    """``(device, description)`` for a ``--device`` value; raises :class:`~bupose.core.cli.BuposeError`
    for a CUDA device that this PyTorch build / machine does not have, or a value that names no
    device. ``description`` says how it was chosen, for the run summary."""
    import torch

    from . import BuposeError

    value = (requested or "auto").strip().lower()
    if value == "auto":
        if torch.cuda.is_available():
            return "cuda", f"cuda ({torch.cuda.get_device_name(0)}; chosen by --device auto)"
        return "cpu", "cpu (--device auto: no CUDA device visible to PyTorch)"
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise BuposeError(f"--device {requested}: not a device; expected {DEVICE_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise BuposeError(f"--device {requested}: CUDA is not available ({why}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise BuposeError(f"--device {requested}: only {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        return str(dev), f"{dev} ({torch.cuda.get_device_name(dev.index or 0)})"
    if dev.type != "cpu":
        raise BuposeError(f"--device {requested}: unsupported device type {dev.type!r}; expected {DEVICE_HELP}")
    return "cpu", "cpu"
