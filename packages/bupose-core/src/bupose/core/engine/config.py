"""Training configuration: one dataclass, read from JSON/TOML/YAML files and ``--set key=value``.

Every problem with a configuration (an unknown key, a value of the wrong type, a dataset path that
does not exist, a head that does not support the layout...) raises :class:`ConfigError` with one line
that names the key and what was expected, before any training starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CPU_RECIPE", "ConfigError", "TrainConfig", "apply_overrides", "load_config", "parse_override"]


class ConfigError(ValueError):
    """A training configuration is invalid; the message is one line naming the key and the fix."""


AMP_CHOICES = ("none", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("multistep", "cosine", "constant")

CPU_RECIPE: dict[str, Any] = {
    "optimizer": "adam",
    "weight_decay": 0.0,
    "warmup_steps": 30,
    "lr_schedule": "multistep",
    "lr_milestones": [0.8],
    "lr_factor": 0.1,
    "workers": 0,
    "ckpt_every": 100,
    "log_every": 10,
    "eval_every": 0,
    "augment": {"scale_range": [0.8, 1.25], "max_rotation": 15.0, "max_translate": 10.0},
    "tensorboard": False,
}
"""The short CPU training recipe of ``bupose demo`` (with its 600 steps of 8 images at 128 px, Adam
lr 4e-3), reused by the methods' synthetic-scene training scripts: Adam without weight decay, 30
warm-up steps, x0.1 after 80 % of the steps, batches made in the training process, the mild
affine augmentation. TrainConfig keys; copy before changing (``augment`` is a nested dict)."""


@dataclass
class TrainConfig:
    """Everything a training run needs. ``None`` means "the method's default" where noted.

    Batch sizes are GLOBAL (summed over all processes); each process takes
    ``batch_size / world_size`` samples per step, so a run gives the same result on 1 or N processes.
    ``lr_milestones`` are fractions of the total number of steps at which the learning rate is
    multiplied by ``lr_factor`` (DEKR's 90 and 120 of 140 epochs are ``[0.643, 0.857]``).
    ``param_groups`` lists optimiser rules ``{"prefix": "backbone.", "lr_scale": 0.1, "weight_decay":
    null, "frozen": false, "freeze_bn": false}`` over the model's parameter names, applied before the
    head's own ``param_group_rules()`` (first match wins).
    ``init_weights`` initialises the whole model from a checkpoint of the same head and backbone;
    ``init_backbone`` only the backbone (a bupose checkpoint of any head on this backbone, an
    official backbone file such as the ImageNet HRNets, or an official model file of any head).
    ``time_limit_s`` stops training early (checkpoint and export as usual) once the loop has run
    that long; a run that stops this way is not reproducible step for step.
    """

    head: str = ""
    backbone: str = ""
    data: str = ""
    out: str = ""
    val_data: str | None = None
    layout: str | None = None
    input_size: int = 256
    batch_size: int = 8
    steps: int | None = None
    epochs: int = 1
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    lr_schedule: str | None = None
    lr_milestones: list[float] | None = None
    lr_factor: float | None = None
    warmup_steps: int = 0
    amp: str = "none"
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    eval_every: int = 0
    ckpt_every: int = 200
    log_every: int = 10
    seed: int = 0
    workers: int = 2
    threads: int = 0
    device: str = "auto"
    sync_bn: bool = False
    best_metric: str = "AP"
    eval_batch_size: int = 8
    max_val_images: int | None = None
    tensorboard: bool = True
    progress: bool = True
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    codec_kwargs: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)
    param_groups: list[dict[str, Any]] | None = None
    init_weights: str | None = None
    init_backbone: str | None = None
    time_limit_s: float | None = None

    # ------------------------------------------------------------------ checks
    def validate(self) -> TrainConfig:
        """Check values that do not need the registry or the file system; return self."""
        for name in ("head", "backbone", "data", "out"):
            if not getattr(self, name):
                raise ConfigError(f"config: {name!r} is required (e.g. --{name.replace('_', '-')} ... )")
        positive = ["input_size", "batch_size", "epochs", "log_every", "eval_batch_size"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"config: {name} must be > 0, got {getattr(self, name)}")
        for name in ("steps", "max_val_images", "time_limit_s"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"config: {name} must be > 0 (or null), got {v}")
        for name in ("warmup_steps", "eval_every", "ckpt_every", "workers", "threads", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: {name} must be >= 0, got {getattr(self, name)}")
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"config: amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"config: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.lr_schedule is not None and self.lr_schedule not in SCHEDULES:
            raise ConfigError(
                f"config: lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"config: lr must be > 0, got {self.lr}")
        if self.lr_milestones is not None and any(not 0.0 < m < 1.0 for m in self.lr_milestones):
            raise ConfigError(
                f"config: lr_milestones are fractions of the run in (0, 1), got {self.lr_milestones}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"config: ema_decay must be in [0, 1), got {self.ema_decay}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping, checking every key and type."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
        cfg = cls()
        for key, value in data.items():
            _set_field(cfg, str(key), value, source)
        return cfg


# ---------------------------------------------------------------------- typing helpers
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"a list of {_describe(arg)}"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` converted to ``tp`` or raise TypeError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_coerce(v, arg) for v in value]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise TypeError
        return dict(value)
    raise TypeError


def _set_field(cfg: TrainConfig, key: str, value: Any, source: str) -> None:
    types_ = _field_types()
    top, _, sub = key.partition(".")
    if top not in types_:
        import difflib

        close = difflib.get_close_matches(top, list(types_), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{source}: unknown key {top!r}{hint} (known keys: {', '.join(types_)})")
    tp = types_[top]
    if sub:
        if typing.get_origin(tp) is not dict:
            raise ConfigError(f"{source}: {top!r} is not a mapping, so {key!r} cannot be set")
        getattr(cfg, top)[sub] = value
        return
    try:
        setattr(cfg, top, _coerce(value, tp))
    except TypeError:
        raise ConfigError(
            f"{source}: {key} must be {_describe(tp)}, got {type(value).__name__} {value!r}"
        ) from None


# ---------------------------------------------------------------------- files and overrides
def _read_file(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise ConfigError(
                    f"config file {path}: YAML needs pyyaml (pip install pyyaml); or use .json/.toml"
                ) from None
            return yaml.safe_load(text) or {}
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one line
        raise ConfigError(f"config file {path}: cannot be parsed ({type(exc).__name__}: {exc})") from None
    raise ConfigError(f"config file {path}: expected a .json, .toml or .yaml file")


def parse_override(item: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, value); the value is read as JSON when it parses (so ``null``,
    ``true``, ``3``, ``[0.5, 0.8]``, ``{"a": 1}``), else it is the plain string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value")
    raw = raw.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def apply_overrides(cfg: TrainConfig, items: Iterable[str] | Mapping[str, Any], source: str = "--set") -> TrainConfig:
    """Apply ``key=value`` strings (or a mapping) to ``cfg`` in place; returns it."""
    pairs = items.items() if isinstance(items, Mapping) else (parse_override(i) for i in items)
    for key, value in pairs:
        _set_field(cfg, key, value, source)
    return cfg


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    base: TrainConfig | None = None,
) -> TrainConfig:
    """``base`` (or defaults) updated by the file at ``path`` then by ``overrides``; validated."""
    cfg = base if base is not None else TrainConfig()
    if path is not None:
        apply_overrides(cfg, dict(_read_file(Path(path))), source=f"config file {path}")
    apply_overrides(cfg, overrides)
    return cfg.validate()
