"""``bupose plugins``, ``bupose list`` and ``bupose info``: what is installed and in use."""

from __future__ import annotations

__all__ = [
    "OPTION_ALIASES", "head_lines", "heads_help_lines", "info_command", "installed_heads_line", "list_command",
    "plugins_command",
]  # fmt: skip

import json
import os
import platform
import sys
from importlib import metadata as md
from typing import Any

import click

from ..plugins import FIRST_PARTY, get_registry
from ..specs import SPEC_TYPES, BackboneSpec, GrouperSpec, HeadSpec, OpSpec, WeightsSpec

OPTION_ALIASES: dict[str, str] = {
    "flip": "--flip/--no-flip",
    "scales": "--scales",
    "input_size": "--input-size",
    "amp": "--amp",
    "rescore_weights": "--rescore-weights",
}
"""Option name -> the short flag of ``bupose run`` / ``bupose eval`` that sets it (for heads that
declare that option)."""


def _facts(spec: Any) -> str:
    if isinstance(spec, BackboneSpec):
        outs = ", ".join(f"{k}: {v.channels}ch/s{v.stride}" for k, v in spec.outputs.items())
        return outs + (f"; sizes divisible by {spec.size_divisibility}" if spec.size_divisibility > 1 else "")
    if isinstance(spec, GrouperSpec):
        return f"needs: {', '.join(spec.requires) or 'positions and scores'}" + (
            f"; layouts: {', '.join(spec.layouts)}" if spec.layouts else ""
        )
    if isinstance(spec, HeadSpec):
        return f"layouts: {', '.join(spec.layouts)}"
    if isinstance(spec, OpSpec):
        return f"{spec.implementation}, priority {spec.priority}, {'/'.join(spec.devices)}"
    if isinstance(spec, WeightsSpec):
        return f"{spec.head}+{spec.backbone} {spec.layout}: {', '.join(spec.file_names)}"
    return ""


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """Installed bupose distributions, what each registers, and load errors."""
    desc = get_registry().describe()
    if as_json:
        click.echo(json.dumps(desc, indent=2))
        return
    for dist in desc["distributions"]:
        click.echo(f"{dist['distribution']} {dist['version']}")
        for plugin in dist["plugins"]:
            tag = " (built-in)" if plugin["builtin"] else ""
            click.echo(f"  plugin {plugin['name']} [{plugin['module']}]{tag}")
            for kind, names in plugin["components"].items():
                click.echo(f"    {kind}: {', '.join(names)}")
            if plugin["commands"]:
                click.echo(f"    commands: {', '.join(plugin['commands'])}")
            for err in plugin["errors"]:
                click.echo(f"    ERROR during {err['stage']}: {err['error']}")
    if desc["errors"]:
        click.echo(f"\n{len(desc['errors'])} plugin error(s); `bupose plugins --json` has tracebacks.")


def head_lines(spec: HeadSpec, registry: Any, indent: str = "    ") -> list[str]:
    """How a head groups people and its declared test-time options, as text lines."""
    from ..grouping import compatible_groupers
    from ..options import OptionError, describe, format_option_rows

    lines = []
    if spec.grouper is None:
        lines.append(f"{indent}grouping: forms people itself (no --grouper)")
    else:
        usable = sorted({g for lay in spec.layouts for g in compatible_groupers(spec, lay, registry=registry)})
        others = [g for g in usable if g != spec.grouper]
        lines.append(
            f"{indent}grouping: grouper {spec.grouper!r} by default"
            + (f"; --grouper may pick: {', '.join(others)}" if others else "; no other installed grouper fits")
            + (f" (candidates carry: {', '.join(spec.candidate_fields)})" if spec.candidate_fields else "")
        )
    if spec.options is None:
        lines.append(f"{indent}test options: none declared")
        return lines
    try:
        rows = describe(spec.load_options())
    except (ImportError, AttributeError, OptionError) as exc:
        lines.append(f"{indent}test options: cannot be read ({type(exc).__name__}: {exc})")
        return lines
    short = [f"{flag} = {name}" for name, flag in OPTION_ALIASES.items() if any(r.name == name for r in rows)]
    lines.append(
        f"{indent}test options (--option KEY=VALUE"
        + (f"; short forms: {', '.join(short)}" if short else "") + "):"
    )
    lines.extend(format_option_rows(rows, indent=indent + "  "))
    return lines


def _not_installed(kind: str, installed: list[str]) -> list[tuple[str, str]]:
    return sorted((n, p) for n, p in FIRST_PARTY.get(kind, {}).items() if n not in installed)


def _option_keys(spec: HeadSpec) -> str:
    """The names of a head's declared test options, comma-separated ("" when none / unreadable)."""
    from ..options import OptionError, option_names

    if spec.options is None:
        return ""
    try:
        return ", ".join(option_names(spec.load_options()))
    except (ImportError, AttributeError, OptionError):
        return ""


def installed_heads_line() -> str:
    """One line naming the installed heads (for ``bupose --help``)."""
    names = get_registry().names("heads")
    return f"Installed heads: {', '.join(names)}." if names else (
        "No heads installed yet: pip install bupose-dekr (or another head package)."
    )


def heads_help_lines(head: str | None = None) -> list[str]:
    """The heads section of ``bupose run --help``: installed heads, installable first-party heads,
    and with ``head`` its grouping and test options."""
    registry = get_registry()
    installed = registry.names("heads")
    lines = ["Installed heads:" if installed else "Installed heads: none."]
    for name in installed:
        spec = registry.components["heads"][name]
        lines.append(f"  {name:<14} {spec.summary} [{', '.join(spec.layouts)}] <- {spec.distribution}")
        keys = _option_keys(spec)
        if keys:
            import textwrap

            lines.extend(textwrap.wrap(f"--option keys: {keys}", 96, initial_indent=" " * 17, subsequent_indent=" " * 19))
    missing = _not_installed("heads", installed)
    if missing:
        lines.append("Not installed (first-party packages, `pip install PACKAGE`):")
        lines.append("  " + ", ".join(f"{n} ({p})" for n, p in missing))
    if head is None:
        lines.append("`bupose run --head H --help` shows head H's test options.")
        return lines
    lines.append("")
    if head not in registry.components["heads"]:
        lines.append(registry.unknown_message("heads", head))
        return lines
    spec = registry.components["heads"][head]
    assert isinstance(spec, HeadSpec)
    lines.append(f"Head {head!r}:")
    lines.extend(head_lines(spec, registry, indent="  "))
    return lines


def _json_entry(spec: Any) -> dict[str, Any]:
    from ..zoo import zoo_entry

    if isinstance(spec, WeightsSpec):
        return zoo_entry(spec)
    return {"name": spec.name, "summary": spec.summary, "facts": _facts(spec),
            "distribution": spec.distribution, "version": spec.version}  # fmt: skip


def _weights_lines(spec: WeightsSpec, pad: str) -> list[str]:
    """sha256, size, licence and reported AP of a checkpoint, as listing lines."""
    from ..zoo import UNKNOWN, zoo_entry

    e = zoo_entry(spec)
    digest = e["sha256"]
    if digest == UNKNOWN and "sha256_prefix" in e:
        digest = "prefix " + ", ".join(e["sha256_prefix"].values()) + " (from the file name)"
    size = f"{e['size_bytes']:,} bytes" if isinstance(e["size_bytes"], int) else UNKNOWN
    ap = "; ".join(f"{x['AP']:.1f} ({x['setting']})" for x in e["paper_ap"]) or "not recorded"
    return [f"{pad}sha256: {digest}; size: {size}", f"{pad}licence: {e['licence']}", f"{pad}paper AP: {ap}"]


class _KindChoice(click.Choice):
    """A component kind; the singular (``head``) and any case are accepted."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip().lower()
        singular = {k[:-1]: k for k in SPEC_TYPES if k.endswith("s")}
        return super().convert(singular.get(text, text), param, ctx)


@click.command("list")
@click.argument("kind", required=False, type=_KindChoice(list(SPEC_TYPES)))
@click.option("--verbose", "-v", is_flag=True, help="Also each head's grouping and test options (defaults, meaning).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (weights: the model zoo's provenance).")
@click.option("--markdown", "as_markdown", is_flag=True, help="The model zoo as Markdown (docs/models.md); weights only.")
def list_command(kind: str | None, verbose: bool = False, as_json: bool = False, as_markdown: bool = False) -> None:
    """Registered components, optionally of one KIND (`bupose list weights` is the model zoo)."""
    registry = get_registry()
    kinds = [kind] if kind else list(SPEC_TYPES)
    if as_markdown:
        if kind not in (None, "weights"):
            raise click.BadParameter("--markdown lists weights only: `bupose list weights --markdown`")
        from ..zoo import models_markdown

        click.echo(models_markdown(registry), nl=False)
        return
    if as_json:
        out = {k: [_json_entry(registry.components[k][n]) for n in registry.names(k)] for k in kinds}
        click.echo(json.dumps(out[kind] if kind else out, indent=2))
        return
    for k in kinds:
        names = registry.names(k)
        click.echo(f"{k}:")
        if not names:
            click.echo(f"  (no {k} installed)")
            first_party = sorted(set(FIRST_PARTY.get(k, {}).values()))
            if first_party:
                click.echo(
                    f"  install one, e.g.: {sys.executable} -m pip install {first_party[0]}"
                    f"  (available: {', '.join(first_party)})"
                )
            continue
        for name in names:
            spec = registry.components[k][name]
            facts = _facts(spec)
            click.echo(
                f"  {name:<28} {spec.summary}"
                + (f" [{facts}]" if facts else "")
                + f"  <- {spec.distribution} {spec.version}"
            )
            if isinstance(spec, WeightsSpec):
                if spec.source:
                    click.echo(f"  {'':<28} get it from: {spec.source}")
                for line in _weights_lines(spec, f"  {'':<28} "):
                    click.echo(line)
            if verbose and isinstance(spec, HeadSpec):
                for line in head_lines(spec, registry):
                    click.echo(line)
        missing = _not_installed(k, names)
        if missing:
            click.echo(
                f"  not installed (first-party): {', '.join(f'{n} ({p})' for n, p in missing)}"
            )


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


@click.command("info")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_command(as_json: bool) -> None:
    """Versions, devices and which op implementations are in use."""
    import torch

    from ..ops import OpUnavailableError, op_status, selected_implementation

    registry = get_registry()
    dists = sorted({p.distribution for p in registry.plugins})
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "opencv": _version("opencv-python-headless") or _version("opencv-python"),
        "pycocotools": _version("pycocotools"),
        "bupose": {d: _version(d) for d in dists},
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
        "ops": {},
    }
    for name, impls in op_status().items():
        chosen: dict[str, str | None] = {}
        for dev in ("cpu", "cuda"):
            try:
                chosen[dev] = selected_implementation(name, dev)
            except OpUnavailableError as exc:
                chosen[dev] = None
                info.setdefault("op_errors", {})[f"{name}/{dev}"] = str(exc)
        info["ops"][name] = {"in_use": chosen, "implementations": impls}
    info["ops_forced"] = os.environ.get("BUPOSE_OPS") or None
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key in ("python", "platform", "torch", "numpy", "opencv", "pycocotools"):
        click.echo(f"{key:<12} {info[key]}")
    click.echo("bupose:")
    for d, v in info["bupose"].items():
        click.echo(f"  {d:<24} {v}")
    devices = ", ".join(info["cuda_devices"]) or "none"
    click.echo(f"device       cpu ({info['cpu_threads']} threads); cuda: {devices}")
    click.echo("ops:" + (f" (forced by BUPOSE_OPS={info['ops_forced']})" if info["ops_forced"] else ""))
    for name, o in info["ops"].items():
        click.echo(f"  {name}: cpu -> {o['in_use']['cpu']}, cuda -> {o['in_use']['cuda']}")
        for i in o["implementations"]:
            state = "available" if i["available"] else f"unavailable ({i['reason']})"
            click.echo(f"    {i['implementation']:<10} priority {i['priority']:<3} {state}")
