"""Core built-in plugin adding ``bupose run`` (pose estimation on images, folders and videos)."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl


@hookimpl
def bupose_register_commands(cli: Any) -> None:
    from ..cli.run import run_command

    cli.add_command(run_command)
