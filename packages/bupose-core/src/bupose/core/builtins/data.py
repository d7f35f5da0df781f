"""Core's data plugin: dataset formats and the ``bupose data`` / ``bupose eval`` commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..hookspecs import hookimpl
from ..specs import DatasetSpec


@hookimpl
def bupose_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="coco",
            factory="bupose.core.data.dataset:open_coco",
            layout="coco17",
            summary="COCO person keypoints: ROOT/annotations/person_keypoints_SPLIT.json + ROOT/SPLIT/",
        )
    )
    register(
        DatasetSpec(
            name="crowdpose",
            factory="bupose.core.data.dataset:open_crowdpose",
            layout="crowdpose14",
            summary="CrowdPose: ROOT/json/crowdpose_SPLIT.json + ROOT/images/ (14 joints, crowdIndex)",
        )
    )
    register(
        DatasetSpec(
            name="ochuman",
            factory="bupose.core.data.dataset:open_ochuman",
            layout="coco17",
            summary="OCHuman (COCO format): ochuman_coco_format_SPLIT_range_0.00_1.00.json + ROOT/images/",
        )
    )
    register(
        DatasetSpec(
            name="json",
            factory="bupose.core.data.dataset:load_dataset",
            layout="coco17",
            summary="any COCO-format keypoints json (images in a sibling images/ folder or next to it); "
            "also `bupose data synth` output",
        )
    )


@hookimpl
def bupose_register_commands(cli: Any) -> None:
    from ..cli.data import data_group, synth_command
    from ..cli.eval import eval_command

    existing = cli.commands.get("data") if hasattr(cli, "commands") else None
    if isinstance(existing, click.Group):
        existing.add_command(synth_command)
    else:
        cli.add_command(data_group)
    if "eval" not in getattr(cli, "commands", {}):
        cli.add_command(eval_command)
