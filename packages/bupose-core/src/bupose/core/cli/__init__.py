"""The ``bupose`` command line.

Every command is registered through the ``bupose_register_commands`` hook, core's own included.
Failures exit non-zero with one clear line; ``bupose --debug ...`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ..plugins import get_registry

__all__ = ["BuposeError", "cli", "main"]


class BuposeError(click.ClickException):
    """A user-facing failure: printed as one line, exit status 1."""


class _Group(click.Group):
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        from .components import installed_heads_line

        formatter.write_paragraph()
        formatter.write_text(installed_heads_line() + " `bupose list` shows every installed component.")

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise BuposeError(_one_line(exc)) from exc


_PLAIN_ERRORS = ("CheckpointError", "CheckpointMismatchError", "EvalError", "DatasetError", "ConfigError",
                 "OptionError", "GroupingError", "UnknownComponentError", "LayoutMismatchError", "ExportError",
                 "OpUnavailableError", "MissingSampleKeyError")
"""bupose's own input errors: their message already says what is wrong with which file or field."""


def _one_line(exc: BaseException) -> str:
    """A failure as one line: bupose's input errors as they are, anything else with its type and a
    pointer to ``--debug``."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or repr(exc)
    if type(exc).__name__ in _PLAIN_ERRORS:
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="bupose-core", prog_name="bupose")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """bupose: bottom-up multi-person pose estimation with any backbone under any head, as plugins
    (the heads installed here are listed below)."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:  # also shows what native libraries (OpenCV, libjpeg, libpng) print: bupose.core.io
        os.environ["BUPOSE_DEBUG"] = "1"
    _show_user_warnings()


def _show_user_warnings() -> None:
    """Print bupose's warnings to users (a checkpoint digest mismatch) as one ``warning: ...`` line."""
    import warnings

    from ..zoo import WeightsDigestWarning

    previous = warnings.showwarning
    if getattr(previous, "_bupose", False):
        return

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(category, WeightsDigestWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            previous(message, category, filename, lineno, file, line)

    show._bupose = True  # type: ignore[attr-defined]
    warnings.showwarning = show


_COMMANDS_ADDED = False


def build_cli() -> click.Group:
    """The root group with every plugin's commands added (once per process)."""
    global _COMMANDS_ADDED
    if not _COMMANDS_ADDED:
        get_registry().add_commands(cli)
        _COMMANDS_ADDED = True
    return cli


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    build_cli()
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="bupose")
