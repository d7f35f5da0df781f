"""``bupose convert OFFICIAL_FILE OUT.safetensors``: an official checkpoint -> a bupose checkpoint.

The file is read with ``weights_only=True`` (:func:`~bupose.core.weights.read_checkpoint`), recognised
through the registered :class:`~bupose.core.specs.WeightsSpec` converters
(:func:`~bupose.core.weights.detect_official`), converted, loaded strictly into the model built from the
spec (``build_model``) and written as safetensors with metadata (head, backbone, layout, source file,
the converter, bupose version, and ``provenance``: the official file's sha256/size where known, source,
licence status and paper AP from the model zoo, plus the sha256 of the file actually converted). ``--head/--backbone/--layout`` restrict detection and choose the
model explicitly. Files of another role (for example DEKR's rescoring net) are converted and, when
the converter can ``build(state_dict)`` a module, loaded strictly into it before being written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..plugins import Registry, get_registry
from ..specs import WeightsSpec
from ..weights import CheckpointError, load_state_dict_strict, read_checkpoint, save_safetensors
from ..zoo import file_sha256, provenance

__all__ = ["convert_checkpoint", "convert_command"]


def _core_version() -> str:
    from .. import __version__

    return __version__


def _choose_spec(
    raw: dict[str, Any],
    registry: Registry,
    head: str | None,
    backbone: str | None,
    layout: str | None,
    source: str,
) -> WeightsSpec:
    specs = [s for s in registry.components["weights"].values() if isinstance(s, WeightsSpec)]
    if head is not None:
        specs = [s for s in specs if s.head == head]
    if layout is not None:
        specs = [s for s in specs if s.layout == layout]
    matches: list[WeightsSpec] = []
    for spec in specs:
        try:
            converter = spec.load()
        except Exception:  # noqa: BLE001 - a broken converter must not hide the others
            continue
        if converter.detect(raw):
            matches.append(spec)
    if not matches:
        known = ", ".join(f"{s.name} ({'/'.join(s.file_names)})" for s in specs) or "none installed"
        wanted = ", ".join(f"--{k} {v}" for k, v in (("head", head), ("layout", layout)) if v)
        raise CheckpointError(
            f"{source}: not a known official key layout{' for ' + wanted if wanted else ''}; "
            f"known: {known}"
        )
    if backbone is not None:
        same = [s for s in matches if s.role != "model" or s.backbone == backbone]
        if not same:
            raise CheckpointError(
                f"{source}: looks like {matches[0].name} (backbone {matches[0].backbone}), "
                f"but --backbone {backbone} was given"
            )
        matches = same
    return matches[0]


def convert_checkpoint(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    head: str | None = None,
    backbone: str | None = None,
    layout: str | None = None,
    trust: bool = False,
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Convert an official checkpoint file to a bupose safetensors file; returns its metadata."""
    from ..model import build_model

    registry = registry or get_registry()
    raw, meta = read_checkpoint(source, trust=trust)
    if meta:
        raise CheckpointError(f"{source}: already a bupose checkpoint ({meta.get('head')}+{meta.get('backbone')})")
    spec = _choose_spec(raw, registry, head, backbone, layout, str(source))
    converter = spec.load()
    converted = converter.convert(raw)
    metadata: dict[str, Any] = {
        "role": spec.role,
        "head": spec.head,
        "layout": layout or spec.layout,
        "source_file": Path(source).name,
        "converted_from": spec.name,
        "bupose_version": _core_version(),
        "converter_distribution": f"{spec.distribution} {spec.version}",
        "provenance": {**provenance(spec), "source_sha256": file_sha256(source)},
    }
    if spec.role == "model":
        model = build_model(head or spec.head, backbone or spec.backbone, layout or spec.layout, registry=registry)
        load_state_dict_strict(model, converted, f"{source} ({spec.name})")
        metadata.update(model.metadata())
        metadata["role"] = "model"
        metadata["converted_from"] = spec.name
        state = model.state_dict()
    else:
        metadata["backbone"] = spec.backbone
        build = getattr(converter, "build", None)
        state = build(converted).state_dict() if build is not None else converted
    save_safetensors(out, state, metadata)
    return metadata


@click.command("convert")
@click.argument("official_file", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--head", default=None, help="Head the file is for (default: detected).")
@click.option("--backbone", default=None, help="Backbone to build (default: detected).")
@click.option("--layout", default=None, help="Keypoint layout (default: detected).")
@click.option("--trust-checkpoint", is_flag=True, help="Unpickle arbitrary objects (trusted files only).")
def convert_command(
    official_file: str, out: str, head: str | None, backbone: str | None, layout: str | None,
    trust_checkpoint: bool,
) -> None:
    """Convert an official checkpoint (detected from its key layout) to OUT.safetensors."""
    if not out.endswith(".safetensors"):
        raise click.BadParameter(f"{out}: the output must be a .safetensors file", param_hint="OUT")
    meta = convert_checkpoint(
        official_file, out, head=head, backbone=backbone, layout=layout, trust=trust_checkpoint
    )
    what = f"{meta['head']}+{meta['backbone']}" if meta["role"] == "model" else f"{meta['head']} {meta['role']}"
    click.echo(f"{official_file}: {meta['converted_from']} ({what}, {meta['layout']}) -> {out}")
