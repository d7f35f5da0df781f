"""Optimiser parameter groups, frozen parameters and frozen batch norm from :class:`ParamGroupRule` s.

Rules come from the head (``Head.param_group_rules()``) and, ahead of them, from the
``param_groups`` setting of the training configuration; each parameter of the whole ``PoseModel``
(``backbone.…``, ``head.…``) takes the first rule whose prefix it starts with. Parameters no rule
matches form the first group, at the run's learning rate and weight decay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..model import ParamGroupRule
from .config import ConfigError

__all__ = ["ParamPlan", "parse_rules", "plan_param_groups", "set_train_mode"]

_RULE_KEYS = ("prefix", "lr_scale", "weight_decay", "frozen", "freeze_bn")


def parse_rules(items: Iterable[Mapping[str, Any] | ParamGroupRule], source: str = "config: param_groups") -> list[ParamGroupRule]:
    """Rules from mappings ``{"prefix": ..., "lr_scale": ..., ...}`` (or rules); one-line errors."""
    rules: list[ParamGroupRule] = []
    for i, item in enumerate(items):
        if isinstance(item, ParamGroupRule):
            rules.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(f"{source}[{i}]: expected a mapping with keys {', '.join(_RULE_KEYS)}, got {item!r}")
        unknown = sorted(set(item) - set(_RULE_KEYS))
        if unknown:
            raise ConfigError(f"{source}[{i}]: unknown key(s) {', '.join(unknown)}; known: {', '.join(_RULE_KEYS)}")
        if "prefix" not in item:
            raise ConfigError(f"{source}[{i}]: 'prefix' is required (e.g. \"backbone.\")")
        try:
            rules.append(
                ParamGroupRule(
                    prefix=item["prefix"],
                    lr_scale=float(item.get("lr_scale", 1.0)),
                    weight_decay=None if item.get("weight_decay") is None else float(item["weight_decay"]),
                    frozen=_bool(item.get("frozen", False), f"{source}[{i}].frozen"),
                    freeze_bn=_bool(item.get("freeze_bn", False), f"{source}[{i}].freeze_bn"),
                )
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{source}[{i}]: {exc}") from None
    return rules


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true/false, got {value!r}")
    return value


def _first(rules: Sequence[ParamGroupRule], name: str) -> int | None:
    for i, rule in enumerate(rules):
        if rule.matches(name):
            return i
    return None


@dataclass
class ParamPlan:
    """What :func:`plan_param_groups` decided.

    ``groups`` are ``torch.optim`` parameter groups (``params``, ``lr``, ``weight_decay``, and
    ``name`` = the rule's prefix or ``"default"``); ``frozen`` the names of frozen parameters;
    ``frozen_bn`` the batch-norm modules kept in eval mode.
    """

    groups: list[dict[str, Any]]
    frozen: list[str] = field(default_factory=list)
    frozen_bn: list[nn.Module] = field(default_factory=list)


def plan_param_groups(
    model: nn.Module, rules: Sequence[ParamGroupRule], *, lr: float, weight_decay: float
) -> ParamPlan:
    """Freeze what the rules freeze (``requires_grad=False``) and group the rest.

    A rule whose prefix matches no parameter (and no batch-norm module) is a :class:`ConfigError`
    (a typo would otherwise silently train everything). Groups keep the model's parameter order:
    the default group first, then one per rule that has trainable parameters, in rule order.
    """
    rules = list(rules)
    used = [False] * len(rules)
    frozen_bn: list[nn.Module] = []
    bn_params: set[int] = set()
    for mod_name, module in model.named_modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        i = _first(rules, mod_name + ".")
        if i is not None and rules[i].freeze_bn:
            used[i] = True
            frozen_bn.append(module)
            bn_params.update(id(p) for p in module.parameters(recurse=False))
    members: dict[int | None, list[Any]] = {None: []}
    frozen: list[str] = []
    for name, param in model.named_parameters():
        i = _first(rules, name)
        if i is not None:
            used[i] = True
        if (i is not None and rules[i].frozen) or id(param) in bn_params:
            param.requires_grad_(False)
            frozen.append(name)
            continue
        if not param.requires_grad:
            continue
        members.setdefault(i, []).append(param)
    unused = [rules[i].prefix for i in range(len(rules)) if not used[i]]
    if unused:
        raise ConfigError(
            f"param_groups: prefix(es) {', '.join(map(repr, unused))} match no parameter of the model "
            f"(names look like {', '.join(repr(n) for n, _ in list(model.named_parameters())[:2])}...)"
        )
    groups: list[dict[str, Any]] = []
    if members[None]:
        groups.append({"params": members[None], "lr": lr, "weight_decay": weight_decay, "name": "default"})
    for i, rule in enumerate(rules):
        params = members.get(i)
        if params:
            wd = weight_decay if rule.weight_decay is None else rule.weight_decay
            groups.append({"params": params, "lr": lr * rule.lr_scale, "weight_decay": wd, "name": rule.prefix})
    if not groups:
        raise ConfigError("param_groups: every parameter of the model is frozen; nothing to train")
    return ParamPlan(groups, frozen, frozen_bn)


def set_train_mode(model: nn.Module, frozen_bn: Sequence[nn.Module] = ()) -> None:
    """``model.train()``, then the frozen batch-norm modules back to eval mode."""
    model.train()
    for m in frozen_bn:
        m.eval()
