"""Core built-in plugin adding ``bupose convert`` (official checkpoint -> bupose safetensors) and
``bupose export`` (ONNX)."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl


@hookimpl
def bupose_register_commands(cli: Any) -> None:
    from ..cli.convert import convert_command
    from ..cli.export import export_command

    cli.add_command(convert_command)
    cli.add_command(export_command)
