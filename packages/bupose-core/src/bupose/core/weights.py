"""Reading, converting and writing checkpoints.

Checkpoints are untrusted input: ``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)``
(plus the few harmless types official files carry, allow-listed by name); bupose's own files are
safetensors with a JSON metadata header (head, backbone, layout, bupose version, config).

Official checkpoints are recognised through the registered :class:`~bupose.core.specs.WeightsSpec`
converters: the spec's factory names an object with ``detect(state_dict) -> bool`` and
``convert(state_dict) -> state_dict`` (bupose key layout, strict).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .plugins import Registry, get_registry
from .specs import WeightsSpec

if TYPE_CHECKING:  # torch is imported lazily so that CLI start-up and plugin listing stay cheap
    import torch

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "HeadFileVariant",
    "atomic_write",
    "detect_official",
    "load_state_dict_strict",
    "read_checkpoint",
    "save_safetensors",
    "unwrap_checkpoint",
]


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or is not what was expected."""


class CheckpointMismatchError(CheckpointError):
    """A state_dict's keys or shapes do not match the model; lists what is missing/unexpected."""

    def __init__(
        self,
        where: str,
        missing: list[str],
        unexpected: list[str],
        shape_mismatch: list[str] | None = None,
    ) -> None:
        self.missing = missing
        self.unexpected = unexpected
        self.shape_mismatch = shape_mismatch or []

        def fmt(keys: list[str]) -> str:
            head = ", ".join(keys[:12])
            return head + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")

        parts = [f"{where}: state_dict does not match the model"]
        if missing:
            parts.append(f"missing keys: {fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {fmt(unexpected)}")
        if self.shape_mismatch:
            parts.append(f"shape mismatches: {fmt(self.shape_mismatch)}")
        super().__init__("; ".join(parts))


_SAFE_GLOBALS_ADDED = False


def _allow_official_types() -> None:
    """Allow-list the harmless non-tensor types some official checkpoint files carry."""
    global _SAFE_GLOBALS_ADDED
    if _SAFE_GLOBALS_ADDED:
        return
    import argparse
    import collections

    import torch

    torch.serialization.add_safe_globals([argparse.Namespace, collections.OrderedDict])
    _SAFE_GLOBALS_ADDED = True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Any) -> Path:
    """Call ``write(tmp_path)`` then rename to ``path`` so no half-written file is ever visible;
    the file gets the permissions ``open()`` would give (0644 under the usual umask 022)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode a plain open() gives
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_safetensors(
    path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> Path:
    """Write a bupose checkpoint: safetensors tensors + ``{"bupose": json(metadata)}`` header."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {"bupose": json.dumps(dict(metadata), sort_keys=True, default=str)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_checkpoint(path: str | os.PathLike[str], *, trust: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read ``path`` -> (raw mapping, bupose metadata or ``{}``).

    ``trust=True`` lets ``torch.load`` unpickle arbitrary objects; only for files the user vouches for.
    A file named like a registered official file is checked against its known sha256
    (:func:`bupose.core.zoo.check_known_file`: a mismatch warns, naming both digests).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix != ".safetensors":
        from .zoo import check_known_file

        check_known_file(path)
    with open(path, "rb") as f:
        magic = f.read(9)
    if path.suffix == ".safetensors" or (len(magic) == 9 and magic[8:9] == b"{"):  # safetensors: u64 + JSON
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from exc
        try:
            info = json.loads(meta.get("bupose", "{}"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: the 'bupose' metadata of the safetensors file is not valid JSON ({exc.msg})") from exc
        if not isinstance(info, dict):
            raise CheckpointError(f"{path}: the 'bupose' metadata of the safetensors file is not a JSON object")
        return tensors, info
    if not magic:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):  # torch.save: a zip archive or a pickle
        raise CheckpointError(
            f"{path}: not a checkpoint (a PyTorch file is a zip archive or a pickle, a bupose file is safetensors; "
            f"this one starts with {magic[:8]!r})"
        )
    _allow_official_types()
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch's pickle-protocol warnings name no file
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global '([\w.]+)'", text)
        if not trust and (found or "Unsupported operand" in text or "weights_only" in text):
            what = f"pickled Python object {found.group(1)}" if found else "pickle data that is not plain tensors"
            raise CheckpointError(
                f"{path}: holds {what}, which was not loaded (checkpoints are read with weights_only: no code "
                "runs); if you trust the file's origin, pass --trust-checkpoint (Python: trust=True)"
            ) from exc
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or damaged: {_first_line(exc)})") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return dict(obj), {}


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (library messages can span many)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def detect_official(
    state_dict: Mapping[str, Any], *, registry: Registry | None = None, role: str | None = None
) -> WeightsSpec | None:
    """The registered weights spec whose converter recognises ``state_dict``, if any."""
    registry = registry or get_registry()
    for spec in registry.components["weights"].values():
        assert isinstance(spec, WeightsSpec)
        if role is not None and spec.role != role:
            continue
        try:
            converter = spec.load()
        except Exception:  # noqa: BLE001 - a broken converter must not hide the others
            continue
        if converter.detect(state_dict):
            return spec
    return None


def load_state_dict_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    """``load_state_dict(strict=True)`` with a :class:`CheckpointMismatchError` naming keys and shapes."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(where, missing, unexpected, shapes)
    module.load_state_dict(dict(state_dict), strict=True)


CHECKPOINT_WRAPPER_KEYS = ("state_dict", "best_state_dict", "model", "weights")
"""Entries of a wrapper dict (training checkpoint, mmcv, Lightning) that may hold the state_dict."""


def unwrap_checkpoint(
    obj: Mapping[str, Any], where: str = "checkpoint", *, wrappers: tuple[str, ...] = CHECKPOINT_WRAPPER_KEYS
) -> dict[str, Any]:
    """The plain state_dict inside a checkpoint object.

    A mapping whose values are all tensors is the state_dict itself; otherwise the first of
    ``wrappers`` holding a non-empty mapping of tensors is taken. A ``module.`` prefix on every key
    (DataParallel / DDP) is removed. Raises :class:`CheckpointError` naming ``where`` for anything
    else (not a mapping, empty, non-tensor entries without a wrapper entry).
    """

    def is_tensor_dict(m: Any) -> bool:
        return isinstance(m, Mapping) and all(isinstance(k, str) and hasattr(v, "shape") for k, v in m.items())

    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a dict of tensors, found {type(obj).__name__}")
    sd: Mapping[str, Any] = obj
    if not is_tensor_dict(sd):
        for key in wrappers:
            inner = sd.get(key)
            if inner and is_tensor_dict(inner):
                sd = inner
                break
        else:
            bad = [str(k) for k, v in sd.items() if not isinstance(k, str) or not hasattr(v, "shape")]
            raise CheckpointError(
                f"{where}: expected a state_dict of tensors or a dict with a "
                f"{'/'.join(repr(w) for w in wrappers)} entry holding one; found non-tensor entries {bad[:8]}"
            )
    if not sd:
        raise CheckpointError(f"{where}: the state_dict is empty")
    out = dict(sd)
    if all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


@dataclass(frozen=True)
class HeadFileVariant:
    """What an official dense-head model file is, read off its key shapes: the backbone it was trained
    on, its layout and joint count, and the head's heatmap/input widths."""

    backbone: str
    layout: str
    num_joints: int
    heatmap_channels: int
    in_channels: int
