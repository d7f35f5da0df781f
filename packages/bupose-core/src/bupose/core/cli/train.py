"""``bupose train``: the training engine on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import click

from . import BuposeError

__all__ = ["train_command"]

def _config_from_cli(config: str | None, flags: dict[str, Any], sets: tuple[str, ...], resume: bool) -> Any:
    """defaults < the stored config of a resumed run < --config FILE < command-line flags < --set."""
    from pathlib import Path

    from ..engine.config import ConfigError, TrainConfig, _read_file, apply_overrides, load_config

    try:
        base = TrainConfig()
        out = flags.get("out")
        stored = Path(out) / "config.json" if out else None
        if resume and stored is not None and stored.is_file() and config is None:
            import json

            base = TrainConfig.from_dict(json.loads(stored.read_text()), source=str(stored))
        given = {k: v for k, v in flags.items() if v is not None}
        cfg = base
        if config:  # not validated yet: the flags may give what the file leaves out (--head, --data ...)
            apply_overrides(cfg, dict(_read_file(Path(config))), source=f"config file {config}")
        apply_overrides(cfg, given, source="command line")
        return load_config(None, sets, base=cfg)
    except ConfigError as exc:
        raise BuposeError(str(exc)) from None


def check_images(datasets: list[tuple[str, Any]], sample: str) -> str:
    """Read (decode) the image files of ``datasets`` (``(key, dataset)`` pairs): every one for
    ``sample == "all"``, else the first, the last and up to 48 spread evenly between them; ``"none"``
    skips it. Raises :class:`BuposeError` naming the first missing / unreadable file; returns a
    summary line."""
    from ..data.dataset import DatasetError

    if sample == "none":
        return "images: not checked (--check-images none)"
    checked = 0
    for key, dataset in datasets:
        n = len(dataset)
        if n == 0:
            raise BuposeError(f"config: {key}: the dataset has no images")
        if sample == "all" or n <= 50:
            idx = list(range(n))
        else:
            idx = sorted({0, n - 1, *(round(i * (n - 1) / 49) for i in range(50))})
        for i in idx:
            try:
                dataset.load_image(i)
            except DatasetError as exc:
                raise BuposeError(f"config: {key}: {exc}") from None
        checked += len(idx)
    total = sum(len(d) for _, d in datasets)
    how = "all" if checked == total else f"a sample of {checked} of {total} (--check-images all reads every one)"
    return f"images: {how} read and decoded"


def _spawn_torchrun(nproc: int, argv: list[str]) -> None:
    """Re-run this command under ``python -m torch.distributed.run`` with ``nproc`` processes."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", "bupose.core", *argv,
    ]
    click.echo(f"bupose train: launching {nproc} processes: {' '.join(cmd)}", err=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise BuposeError(f"training under torchrun failed (exit status {rc}); see the messages above")


@click.command("train")
@click.option("--head", help="Registered head, e.g. dekr.")
@click.option("--backbone", help="Registered backbone, e.g. hrnet_w18_small.")
@click.option("--data", help="Training dataset: a COCO json, a folder with annotations.json, coco:ROOT:SPLIT...")
@click.option("--val-data", "val_data", help="Validation dataset (same forms); evaluated periodically.")
@click.option("--layout", help="Keypoint layout (default: the dataset's).")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="Settings file (.json, .toml, .yaml).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one setting (repeatable).")
@click.option("--out", "--output", "-o", "out", help="Run folder: checkpoints, logs, config, exported weights.")
@click.option("--device", help="auto (default: cuda when available, else cpu), cpu, cuda or cuda:N.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--nproc", type=int, default=1, show_default=True, help="Processes on this machine (torchrun).")
@click.option("--check", is_flag=True, help="Check the configuration, device and images, and exit without training.")
@click.option("--check-images", "check_images_mode", type=click.Choice(["sample", "all", "none"]), default="sample",
              show_default=True, help="Image files read before training: about 50 spread over each dataset, all, or none.")
def train_command(
    head: str | None, backbone: str | None, data: str | None, val_data: str | None, layout: str | None,
    config: str | None, sets: tuple[str, ...], out: str | None, device: str | None, resume: bool,
    nproc: int, check: bool, check_images_mode: str = "sample",
) -> None:
    """Train HEAD on BACKBONE. Settings: defaults < --config FILE < flags < --set key=value.

    Batch size is global (split over processes). Several processes: --nproc N here, or
    torchrun ... -m bupose.core train ... for several machines (docs/training.md).
    """
    from ._openmp import prefer_passive_openmp

    prefer_passive_openmp()  # before torch loads; torchrun's processes inherit it
    from ..engine.build import check_config
    from ..engine.config import ConfigError

    flags = {"head": head, "backbone": backbone, "data": data, "val_data": val_data, "layout": layout,
             "out": out, "device": device}
    cfg = _config_from_cli(config, flags, sets, resume)
    is_worker = "WORLD_SIZE" in os.environ
    try:
        plan = check_config(cfg)
    except ConfigError as exc:
        raise BuposeError(str(exc)) from None
    from ._device import resolve_device

    _, device_note = resolve_device(cfg.device)  # one rule with run/eval: auto, and a clear line for absent CUDA
    images_note = ""
    if not is_worker or int(os.environ.get("RANK", "0")) == 0:
        sets_ = [("data", plan.train_set)] + ([("val_data", plan.val_set)] if plan.val_set is not None else [])
        images_note = check_images(sets_, check_images_mode)
    if check:
        click.echo(f"configuration OK; device: {device_note}; {images_note}")
        return
    if nproc < 1:
        raise BuposeError("--nproc must be >= 1")
    if nproc > 1 and not is_worker:
        if cfg.batch_size % nproc:
            raise BuposeError(f"config: batch_size {cfg.batch_size} (global) is not divisible by --nproc {nproc}")
        argv = ["train"]
        for key, value in flags.items():
            if value is not None:
                argv += [f"--{key.replace('_', '-')}", str(value)]
        if config:
            argv += ["--config", config]
        for item in sets:
            argv += ["--set", item]
        if resume:
            argv.append("--resume")
        _spawn_torchrun(nproc, argv)
        return
    from ..engine.build import train

    try:
        result = train(cfg, resume=resume)
    except ConfigError as exc:
        raise BuposeError(str(exc)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"trained {result.steps} steps in {result.seconds:.1f} s; weights: {result.final_weights}")
        if result.metrics:
            click.echo("last evaluation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
        if result.best_metric is not None:
            click.echo(f"best {cfg.best_metric}: {result.best_metric:.4f} -> {result.best_weights}")
