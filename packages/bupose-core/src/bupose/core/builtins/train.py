"""Core built-in plugin adding ``bupose train`` and ``bupose demo``."""

from __future__ import annotations

import click

from ..hookspecs import hookimpl


@hookimpl
def bupose_register_commands(cli: click.Group) -> None:
    from ..cli.demo import demo_command
    from ..cli.train import train_command

    cli.add_command(train_command)
    cli.add_command(demo_command)
