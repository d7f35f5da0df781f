"""Declared test-time options: a head's options are the fields of one dataclass.

A head names the dataclass in ``HeadSpec.options`` (``"module:attr"``, imported without torch).
Every field has a default and ``metadata={"help": "..."}``; its annotation says how a
``--option KEY=VALUE`` string is read. Supported annotations: ``bool``, ``int``, ``float``,
``str``, ``pathlib.Path``, ``typing.Literal[...]``, ``tuple[T, ...]`` of those scalars, and any of
them ``| None``. A field whose default depends on the layout declares ``None`` as default and the
class a ``layout_defaults`` ``ClassVar`` (layout name -> {field: value}) so that listings show the
real values.

:func:`build_options` turns a mapping of values (strings from the command line or Python values)
into a validated instance; :func:`split_option_items` reads ``KEY=VALUE`` strings;
:func:`describe` gives the rows that ``bupose list heads --verbose`` and ``bupose run --head H
--help`` print. Errors are one :class:`OptionError` line naming the key, the value and what was
expected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
import pathlib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "OptionError",
    "OptionRow",
    "build_options",
    "check_options_class",
    "describe",
    "format_option_rows",
    "option_names",
    "type_name",
    "options_as_dict",
    "split_option_items",
]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null", "")


class OptionError(TypeError, ValueError):
    """An unknown option, a value of the wrong type, or a malformed options class.

    Both a :class:`TypeError` (like an unexpected keyword argument) and a :class:`ValueError`
    (like a bad value), so callers catching either keep working.
    """


@dataclass(frozen=True)
class OptionRow:
    """One declared option as listings show it."""

    name: str
    type: str
    default: str
    help: str


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception as exc:
        raise OptionError(f"options class {cls.__qualname__}: cannot resolve its annotations ({exc})") from exc


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise OptionError(f"options class {cls!r} must be a dataclass")
    return tuple(f for f in dataclasses.fields(cls) if f.init)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise OptionError(f"unsupported option type {tp!r}: only 'T | None' unions are allowed")
        return args[0], True
    return tp, False


_SCALARS: tuple[Any, ...] = (bool, int, float, str, pathlib.Path)


def _check_type(tp: Any, where: str) -> None:
    inner, _ = _split_optional(tp)
    origin = typing.get_origin(inner)
    if origin is Literal:
        return
    if origin is tuple:
        args = typing.get_args(inner)
        if len(args) != 2 or args[1] is not Ellipsis or args[0] not in _SCALARS:
            raise OptionError(f"{where}: tuple options must be tuple[T, ...] with T one of bool/int/float/str/Path")
        return
    if inner not in _SCALARS:
        raise OptionError(f"{where}: unsupported option type {tp!r}")


def type_name(tp: Any) -> str:
    """How listings and errors spell an option type (``float``, ``int | None``, ``tuple[float, ...]``)."""
    inner, optional = _split_optional(tp)
    origin = typing.get_origin(inner)
    if origin is Literal:
        text = " | ".join(repr(a) for a in typing.get_args(inner))
    elif origin is tuple:
        text = f"tuple[{typing.get_args(inner)[0].__name__}, ...]"
    elif inner is pathlib.Path:
        text = "path"
    else:
        text = getattr(inner, "__name__", str(inner))
    return f"{text} | None" if optional else text


def check_options_class(cls: type) -> None:
    """Raise :class:`OptionError` unless ``cls`` is a valid options dataclass (defaults, help, types)."""
    hints = _hints(cls)
    for f in _fields(cls):
        where = f"options class {cls.__qualname__}, field {f.name!r}"
        if _default(f) is dataclasses.MISSING:
            raise OptionError(f"{where}: every option needs a default")
        if not str(f.metadata.get("help", "")).strip():
            raise OptionError(f"{where}: needs metadata={{'help': '...'}}")
        _check_type(hints[f.name], where)
    for layout, values in _layout_defaults(cls).items():
        unknown = set(values) - {f.name for f in _fields(cls)}
        if unknown:
            raise OptionError(
                f"options class {cls.__qualname__}: layout_defaults[{layout!r}] names unknown field(s) "
                f"{', '.join(sorted(unknown))}"
            )


def option_names(cls: type) -> list[str]:
    """The declared option names, in declaration order."""
    return [f.name for f in _fields(cls)]


def _layout_defaults(cls: type) -> Mapping[str, Mapping[str, Any]]:
    value = getattr(cls, "layout_defaults", None)
    return value if isinstance(value, Mapping) else {}


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(_show(v) for v in value) if value else "()"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def describe(cls: type) -> list[OptionRow]:
    """One row per declared option: name, type, default (per layout where it differs) and help."""
    check_options_class(cls)
    hints = _hints(cls)
    per_layout = _layout_defaults(cls)
    rows = []
    for f in _fields(cls):
        default = _show(_default(f))
        layouts = {lay: vals[f.name] for lay, vals in per_layout.items() if f.name in vals}
        if layouts:
            default = ", ".join(f"{_show(v)} ({lay})" for lay, v in layouts.items())
        rows.append(OptionRow(f.name, type_name(hints[f.name]), default, str(f.metadata["help"]).strip()))
    return rows


def format_option_rows(rows: Iterable[OptionRow], indent: str = "  ") -> list[str]:
    """Text lines: ``name  type  default: X`` then the help, indented."""
    out = []
    for r in rows:
        out.append(f"{indent}{r.name} ({r.type}, default {r.default})")
        out.append(f"{indent}    {r.help}")
    return out


def split_option_items(items: Iterable[str], flag: str = "--option") -> dict[str, str]:
    """``KEY=VALUE`` strings -> ``{KEY: "VALUE"}`` (values stay strings; a later KEY wins)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OptionError(f"{flag} {item!r}: expected KEY=VALUE, e.g. match_hmp=true")
        out[key] = raw.strip()
    return out


def _expected(tp: Any) -> str:
    inner, optional = _split_optional(tp)
    origin = typing.get_origin(inner)
    if origin is Literal:
        text = "one of " + ", ".join(repr(a) for a in typing.get_args(inner))
    elif origin is tuple:
        text = f"comma-separated {typing.get_args(inner)[0].__name__} values, e.g. 0.5,1,2"
    elif inner is bool:
        text = "true or false"
    elif inner is int:
        text = "an integer"
    elif inner is float:
        text = "a number"
    elif inner is pathlib.Path:
        text = "the path of an existing file"
    else:
        text = "a string"
    return f"{text} (or none)" if optional else text


class _Bad(Exception):
    pass


def _scalar(tp: Any, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _Bad
    if tp is int:
        if isinstance(value, bool):
            raise _Bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _Bad
    if tp is float:
        if isinstance(value, bool):
            raise _Bad
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise _Bad from None
        else:
            raise _Bad
        if math.isnan(out):
            raise _Bad
        return out
    if tp is str:
        if isinstance(value, str):
            text = value
            if len(text) >= 2 and text[0] == text[-1] == '"':
                with contextlib.suppress(json.JSONDecodeError):
                    text = str(json.loads(text))
            return text
        raise _Bad
    if tp is pathlib.Path:
        if isinstance(value, (str, os.PathLike)):
            path = pathlib.Path(os.fspath(value)).expanduser()
            if not path.is_file():
                raise _Bad
            return path
        raise _Bad
    raise _Bad  # pragma: no cover - types are checked by check_options_class


def _coerce(tp: Any, value: Any) -> Any:
    inner, optional = _split_optional(tp)
    if value is None or (isinstance(value, str) and optional and value.strip().lower() in _NONE):
        if optional:
            return None
        raise _Bad
    origin = typing.get_origin(inner)
    if origin is Literal:
        choices = typing.get_args(inner)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value.strip()):
                return choice
        raise _Bad
    if origin is tuple:
        elem = typing.get_args(inner)[0]
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError:
                    raise _Bad from None
                if not isinstance(parsed, list):
                    raise _Bad
                items: list[Any] = parsed
            else:
                items = [s for s in (p.strip() for p in text.split(",")) if s]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        elif elem in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            items = [value]
        else:
            raise _Bad
        return tuple(_scalar(elem, v) for v in items)
    return _scalar(inner, value)


def _closest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def build_options(
    cls: type,
    values: Mapping[str, Any] | None = None,
    *,
    context: str = "",
    flag: str = "--option",
) -> Any:
    """A validated ``cls`` instance from ``values`` (CLI strings or Python values) over the defaults.

    ``context`` names the owner in messages (``"head 'dekr'"``); ``flag`` is how the user gave the
    values (``--option`` on the command line). An unknown key or a bad value raises one
    :class:`OptionError` that lists the known options (and the closest one) or names the expected
    type; a ``ValueError`` from the class's own ``__post_init__`` check is re-raised as an
    :class:`OptionError` with the same text.
    """
    check_options_class(cls)
    hints = _hints(cls)
    fields = {f.name: f for f in _fields(cls)}
    values = dict(values or {})
    owner = f" by {context}" if context else ""
    unknown = [k for k in values if k not in fields]
    if unknown:
        known = ", ".join(fields) or "none"
        first = unknown[0]
        raise OptionError(
            f"{flag} {', '.join(unknown)}: not accepted{owner} (unknown option{'s' if len(unknown) > 1 else ''}; "
            f"known options: {known}{_closest(first, fields)})"
        )
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        tp = hints[key]
        try:
            kwargs[key] = _coerce(tp, value)
        except _Bad:
            shown = value if isinstance(value, str) else repr(value)
            where = f" for {context}" if context else ""
            raise OptionError(f"{flag} {key}={shown}: expected {_expected(tp)} ({type_name(tp)}){where}") from None
    try:
        return cls(**kwargs)
    except OptionError:
        raise
    except (TypeError, ValueError) as exc:
        prefix = f"{context}: " if context else ""
        raise OptionError(f"{prefix}{exc}") from exc


def options_as_dict(options: Any) -> dict[str, Any]:
    """The option values of an options instance, by name (shallow, declaration order)."""
    return {f.name: getattr(options, f.name) for f in _fields(type(options))}
