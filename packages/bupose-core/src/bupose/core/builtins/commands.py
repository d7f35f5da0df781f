"""Core built-in plugin adding ``bupose plugins``, ``bupose list`` and ``bupose info``."""

from __future__ import annotations

import click

from ..hookspecs import hookimpl


@hookimpl
def bupose_register_commands(cli: click.Group) -> None:
    from ..cli.bench import bench_group
    from ..cli.components import info_command, list_command, plugins_command

    cli.add_command(plugins_command)
    cli.add_command(list_command)
    cli.add_command(info_command)
    cli.add_command(bench_group)
