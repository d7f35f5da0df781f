"""The hooks a bupose plugin may implement.

A plugin is a module named in the ``bupose`` entry-point group of its distribution::

    [project.entry-points.bupose]
    mypackage = "mypackage.bupose_plugin"

The module defines functions decorated with ``bupose.core.hookimpl`` whose names are the hook names
below. Every ``bupose_register_<kind>`` hook receives one argument, ``register``: a callable taking
one spec of that kind. Call it once per component. The host calls each hook once per process, when
the registry is first needed (``bupose`` CLI start, ``build_model``, ``get_registry()``), through
pluggy and one plugin at a time, so that ``@hookimpl(tryfirst=True)`` / ``trylast=True`` order the
calls across plugins and a plugin that raises is recorded and skipped without affecting the others.
Implementations must be cheap: build specs, import no torch and no model code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from .specs import (
    BackboneSpec,
    DatasetSpec,
    GrouperSpec,
    HeadSpec,
    LayoutSpec,
    OpSpec,
    WeightsSpec,
)

PROJECT_NAME = "bupose"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def bupose_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    """Register backbones: call ``register(BackboneSpec(...))`` once per backbone.

    Called once when the registry is built. The spec declares every output (channels, stride).
    """


@hookspec
def bupose_register_heads(register: Callable[[HeadSpec], None]) -> None:
    """Register pose heads: call ``register(HeadSpec(...))`` once per head.

    Called once when the registry is built. The spec names the head's codec (which owns decoding),
    inference pipeline, test-time options class, default grouper (if any) and supported layouts.
    """


@hookspec
def bupose_register_groupers(register: Callable[[GrouperSpec], None]) -> None:
    """Register groupers (keypoint candidates -> people): ``register(GrouperSpec(...))``.

    Called once when the registry is built. A head names its default grouper in ``HeadSpec.grouper``;
    ``bupose run --grouper NAME`` picks another whose ``requires`` the head's candidates provide.
    """


@hookspec
def bupose_register_layouts(register: Callable[[LayoutSpec], None]) -> None:
    """Register keypoint layouts (names, flip index, sigmas, skeleton, colours).

    Called once when the registry is built; ``register(LayoutSpec(...))`` per layout.
    """


@hookspec
def bupose_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register dataset formats: ``register(DatasetSpec(...))`` per format.

    Called once when the registry is built.
    """


@hookspec
def bupose_register_ops(register: Callable[[OpSpec], None]) -> None:
    """Register kernel implementations: ``register(OpSpec(name=..., implementation=..., ...))``.

    Called once when the registry is built. Several plugins may register the same op name with
    different implementations and priorities; the op lookup picks the best available one.
    """


@hookspec
def bupose_register_weights(register: Callable[[WeightsSpec], None]) -> None:
    """Register known checkpoints (file names, head/backbone/layout, converter, source).

    Called once when the registry is built; ``register(WeightsSpec(...))`` per checkpoint.
    """


@hookspec
def bupose_register_commands(cli: Any) -> None:
    """Add commands to the ``bupose`` CLI.

    ``cli`` is the root :class:`click.Group`; decorate new commands with ``@cli.command()`` or add
    groups with ``cli.add_command``. Called once when the CLI starts, after the registry is built.
    """


HOOK_NAMES: tuple[str, ...] = (
    "bupose_register_backbones",
    "bupose_register_heads",
    "bupose_register_groupers",
    "bupose_register_layouts",
    "bupose_register_datasets",
    "bupose_register_ops",
    "bupose_register_weights",
    "bupose_register_commands",
)

REGISTER_HOOKS: dict[str, str] = {
    "bupose_register_backbones": "backbones",
    "bupose_register_heads": "heads",
    "bupose_register_groupers": "groupers",
    "bupose_register_layouts": "layouts",
    "bupose_register_datasets": "datasets",
    "bupose_register_ops": "ops",
    "bupose_register_weights": "weights",
}
"""Hook name -> registry kind for the hooks that take ``register``."""
