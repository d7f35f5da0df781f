"""The training loop: any registered backbone + head, on one process or many (torchrun).

``Trainer(config, components).fit()``: model -> parameter groups and frozen parts (the head's
``param_group_rules()`` after the config's ``param_groups``) -> DDP (when ``WORLD_SIZE`` > 1) ->
optimiser and learning-rate schedule (the head's ``train_defaults`` fill what the config leaves
unset) -> steps of augmented, encoded :class:`~bupose.core.batch.Batch` es -> ``model(batch)`` ->
``model.loss(outputs, batch)`` -> backward (AMP, gradient clipping) -> optimiser step -> EMA ->
periodic evaluation, checkpoints and logs (rank 0 writes; every rank contributes its random state
to the checkpoint).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..batch import Batch, collate
from ..codec import Encoded
from ..model import PoseModel
from ..weights import save_safetensors
from .checkpoint import (
    capture_rng_state,
    clean_stale_temp_files,
    read_training_checkpoint,
    restore_rng_state,
    write_training_checkpoint,
)
from .config import ConfigError, TrainConfig
from .data import EncodedDataset, StepBatchSampler
from .distributed import DistInfo, all_gather_objects, barrier, init_distributed
from .ema import ModelEMA
from .params import parse_rules, plan_param_groups, set_train_mode

__all__ = ["RESUME_KEYS", "TrainComponents", "TrainResult", "Trainer", "resolve_optim_settings"]

FALLBACK_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "lr_milestones": [],
    "lr_factor": 0.1,
}
"""Optimiser settings used when neither the config nor the head's ``train_defaults`` give one."""

RESUME_KEYS = (
    "head",
    "backbone",
    "layout",
    "data",
    "input_size",
    "batch_size",
    "seed",
    "head_kwargs",
    "backbone_kwargs",
    "codec_kwargs",
    "augment",
    "amp",
    "ema_decay",
    "param_groups",
)
"""Settings a resumed run must share with the run it continues (else it could not be exact)."""


@dataclass
class TrainComponents:
    """What the loop trains on. Built from the registry by ``bupose.core.engine.build_components``;
    tests and custom scripts may assemble their own.

    ``model_factory()`` builds the model (called after seeding, identically on every rank);
    ``train_set[i]`` gives raw samples; ``transform`` augments; ``encode`` makes targets (an
    :class:`~bupose.core.codec.Encoded`); ``sample_keys`` are the keys ``encode`` reads (checked on
    every augmented sample); ``to_tensor`` makes the network input; ``evaluator(model)`` returns
    metrics (run on rank 0); ``train_defaults`` are the head's optimiser defaults;
    ``size_divisibility`` is the multiple :func:`~bupose.core.batch.collate` pads images to (1:
    images of one size are stacked unpadded).
    """

    model_factory: Callable[[], PoseModel]
    train_set: Any
    encode: Callable[[Mapping[str, Any]], Encoded]
    to_tensor: Callable[[np.ndarray], torch.Tensor]
    transform: Callable[..., Mapping[str, Any]] | None = None
    evaluator: Callable[[PoseModel], Mapping[str, float]] | None = None
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    sample_keys: tuple[str, ...] = ()
    size_divisibility: int = 1


@dataclass
class TrainResult:
    """Where a finished run left its files and what it reached."""

    out: Path
    steps: int
    final_weights: Path | None
    best_weights: Path | None
    best_metric: float | None
    metrics: dict[str, float]
    seconds: float


def resolve_optim_settings(cfg: TrainConfig, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Optimiser/schedule settings: the config where set, else the method's defaults, else Adam 1e-3."""
    out: dict[str, Any] = {}
    for key, fallback in FALLBACK_DEFAULTS.items():
        value = getattr(cfg, key)
        if value is None:
            value = defaults.get(key, fallback)
        out[key] = value
    if out["lr_schedule"] == "multistep" and not out["lr_milestones"]:
        out["lr_schedule"] = "constant"
    return out


def _lr_lambda(settings: Mapping[str, Any], total_steps: int, warmup: int) -> Callable[[int], float]:
    schedule = settings["lr_schedule"]
    milestones = sorted(round(m * total_steps) for m in settings["lr_milestones"])
    factor = float(settings["lr_factor"])

    def fn(step: int) -> float:
        w = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if schedule == "multistep":
            return w * factor ** sum(step >= m for m in milestones)
        if schedule == "cosine":
            return w * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
        return w

    return fn


def _build_optimizer(params: Any, settings: Mapping[str, Any], momentum: float) -> torch.optim.Optimizer:
    name, lr, wd = settings["optimizer"], float(settings["lr"]), float(settings["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=momentum)
    raise ConfigError(f"config: optimizer must be adam, adamw or sgd, got {name!r}")


@contextlib.contextmanager
def _preserve_rng() -> Iterator[None]:
    """Run a block (evaluation) without disturbing the training run's random streams."""
    saved = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(saved)


def _config_json(cfg: TrainConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True, indent=2)


class _Logger:
    """JSONL log (+ TensorBoard when installed and wanted); writes only on rank 0."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.path = out / "log.jsonl"
        self.tb: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:  # noqa: BLE001 - tensorboard is optional
                self.tb = None

    def log(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
        if self.tb is not None:
            step = int(record.get("step", 0))
            prefix = record.get("type", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch", "time"):
                    self.tb.add_scalar(f"{prefix}/{key}", value, step)
                elif isinstance(value, Mapping):
                    for k, v in value.items():
                        if isinstance(v, (int, float)):
                            self.tb.add_scalar(f"{prefix}/{key}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)


class Trainer:
    """Trains ``components`` as ``config`` says. Run under torchrun for several processes."""

    def __init__(self, config: TrainConfig, components: TrainComponents, *, resume: bool = False) -> None:
        self.cfg = config.validate()
        self.components = components
        self.resume = resume
        self.out = Path(config.out)

    # ------------------------------------------------------------------ pieces
    def _checkpoint_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    def _setup_threads(self, info: DistInfo) -> None:
        """Torch intra-op threads of this process (docs/training.md, "Threads").

        ``threads > 0``: that many. Else, on a CPU device and without ``OMP_NUM_THREADS``: the CPUs
        this process may run on (``os.sched_getaffinity``, not the machine's count) shared among the
        processes on this machine, at least 1. The count does not depend on the load, so a run is
        reproducible; the training commands make waiting OpenMP threads sleep instead of spin
        (``OMP_WAIT_POLICY=PASSIVE``), which is what keeps a busy machine from thrashing.
        """
        if self.cfg.threads > 0:
            torch.set_num_threads(self.cfg.threads)
            return
        if info.device.type != "cpu" or os.environ.get("OMP_NUM_THREADS"):
            return
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cpus // info.local_world_size))

    def _metadata(self, model: PoseModel, step: int) -> dict[str, Any]:
        from .. import __version__

        meta = model.metadata()
        meta.update(
            {
                "bupose_version": __version__,
                "step": step,
                "input_size": self.cfg.input_size,
                "train_config": self.cfg.to_dict(),
            }
        )
        return meta

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        cfg = self.cfg
        info = init_distributed(cfg.device)
        t_start = time.perf_counter()
        self._setup_threads(info)
        if cfg.batch_size % info.world_size:
            raise ConfigError(
                f"config: batch_size {cfg.batch_size} (global) is not divisible by the {info.world_size} processes"
            )
        if cfg.sync_bn and info.device.type != "cuda":
            raise ConfigError("config: sync_bn needs CUDA devices (torch's SyncBatchNorm is GPU-only)")
        ckpt_path = self._checkpoint_path()
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            clean_stale_temp_files(ckpt_path.parent)
            clean_stale_temp_files(self.out)
        if not self.resume and ckpt_path.exists():
            raise ConfigError(
                f"{self.out} already holds a training checkpoint; pass --resume to continue it or choose another --out"
            )
        state = read_training_checkpoint(ckpt_path) if self.resume else None
        if state is not None:
            saved = state["config"]
            diffs = [k for k in RESUME_KEYS if saved.get(k) != self.cfg.to_dict().get(k)]
            if diffs:
                raise ConfigError(
                    f"--resume: {', '.join(diffs)} differ from the checkpoint's run "
                    f"({', '.join(f'{k}={saved.get(k)!r}' for k in diffs)})"
                )

        # model, identically initialised on every rank
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)
        model = self.components.model_factory()
        if cfg.sync_bn and info.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[assignment]
        settings = resolve_optim_settings(cfg, self.components.train_defaults)
        rules = [*parse_rules(cfg.param_groups or []), *model.param_group_rules()]
        param_plan = plan_param_groups(
            model, rules, lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"])
        )
        model.to(info.device)
        train_model: nn.Module = model
        if info.distributed:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[info.device.index] if info.device.type == "cuda" else None
            )

        # data
        train_set = EncodedDataset(
            self.components.train_set,
            transform=self.components.transform,
            encode=self.components.encode,
            to_tensor=self.components.to_tensor,
            seed=cfg.seed,
            sample_keys=self.components.sample_keys,
        )
        num_samples = len(train_set)
        if num_samples < cfg.batch_size:
            raise ConfigError(
                f"config: the training set has {num_samples} samples, fewer than batch_size {cfg.batch_size}"
            )
        steps_per_epoch = num_samples // cfg.batch_size
        total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch

        # optimisation
        optimizer = _build_optimizer(param_plan.groups, settings, cfg.momentum)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(settings, total_steps, cfg.warmup_steps)
        )
        scaler = torch.amp.GradScaler(info.device.type, enabled=cfg.amp == "fp16")
        ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)

        step = 0
        best: dict[str, Any] = {"value": None, "step": None}
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None and state.get("ema") is not None:
                ema.load_state_dict(state["ema"])
            step = int(state["step"])
            best = dict(state.get("best") or best)
            rng_states = state.get("rng") or []
            if len(rng_states) == info.world_size:
                restore_rng_state(rng_states[info.rank])
            elif info.is_main:
                print(
                    f"bupose train: the checkpoint was written by {len(rng_states)} processes, this run has "
                    f"{info.world_size}; data order stays exact, other random streams are re-seeded"
                )
        else:
            random.seed(cfg.seed + 1000 * info.rank)
            np.random.seed((cfg.seed + 1000 * info.rank) % 2**32)
            torch.manual_seed(cfg.seed + 1000 * info.rank)

        if info.is_main:
            (self.out / "config.json").write_text(_config_json(cfg), encoding="utf-8")
        logger = _Logger(self.out, info.is_main, cfg.tensorboard)
        sampler = StepBatchSampler(
            num_samples,
            cfg.batch_size,
            rank=info.rank,
            world_size=info.world_size,
            seed=cfg.seed,
            start_step=step,
            total_steps=total_steps,
        )
        loader = torch.utils.data.DataLoader(
            train_set,
            batch_sampler=sampler,
            num_workers=cfg.workers,
            collate_fn=functools.partial(collate, size_divisibility=self.components.size_divisibility),
            pin_memory=info.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),
            worker_init_fn=_worker_init,
            persistent_workers=False,
        )

        def save_checkpoint(at_step: int) -> None:
            rng = all_gather_objects(capture_rng_state())
            if info.is_main:
                write_training_checkpoint(
                    ckpt_path,
                    {
                        "step": at_step,
                        "total_steps": total_steps,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "ema": ema.state_dict() if ema is not None else None,
                        "rng": rng,
                        "world_size": info.world_size,
                        "best": best,
                        "config": _config_json(cfg),
                        "metadata": json.dumps(model.metadata(), default=str),
                    },
                )
            barrier()

        eval_model = ema.module if ema is not None else model
        metrics: dict[str, float] = {}

        def run_eval(at_step: int) -> None:
            nonlocal metrics
            if self.components.evaluator is None:
                return
            if info.is_main:
                with _preserve_rng():
                    t0 = time.perf_counter()
                    metrics = {k: float(v) for k, v in self.components.evaluator(eval_model).items()}
                    eval_s = time.perf_counter() - t0
                set_train_mode(model, param_plan.frozen_bn)
                logger.log({"type": "eval", "step": at_step, "metrics": metrics, "seconds": round(eval_s, 3)})
                value = metrics.get(cfg.best_metric)
                if value is not None and (best["value"] is None or value > best["value"]):
                    best["value"], best["step"] = value, at_step
                    save_safetensors(
                        self.out / "best.safetensors", eval_model.state_dict(), self._metadata(model, at_step)
                    )
            barrier()

        pbar = _progress(total_steps, step, info.is_main and cfg.progress)
        t_loop = time.perf_counter()
        set_train_mode(model, param_plan.frozen_bn)
        window_t = time.perf_counter()
        window_steps = 0
        loss_sums: dict[str, float] = {}
        for batch in loader:
            assert isinstance(batch, Batch)
            batch = batch.to(info.device, non_blocking=True)
            with torch.autocast(info.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                outputs = train_model(batch)
            outputs = {k: v.float() for k, v in outputs.items()}
            losses = model.loss(outputs, batch)
            if "loss" in losses:
                raise ValueError("Head.loss must not return a field named 'loss'")
            loss = sum(losses.values())
            assert isinstance(loss, torch.Tensor)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"step {step + 1}: the loss is {loss.item()} ({ {k: float(v) for k, v in losses.items()} }); "
                    "lower lr or enable grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            grad_norm = None
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            step += 1
            window_steps += 1
            for k, v in losses.items():
                loss_sums[k] = loss_sums.get(k, 0.0) + float(v.detach())
            loss_sums["loss"] = loss_sums.get("loss", 0.0) + float(loss.detach())
            pbar.update(1)
            if step % cfg.log_every == 0 or step == total_steps:
                names = sorted(loss_sums)
                vals = torch.tensor([loss_sums[n] / window_steps for n in names], dtype=torch.float64)
                if info.distributed:
                    vals = vals.to(info.device)
                    torch.distributed.all_reduce(vals)
                    vals = vals.cpu() / info.world_size
                elapsed = time.perf_counter() - window_t
                record: dict[str, Any] = {
                    "type": "train",
                    "step": step,
                    "epoch": (step - 1) // steps_per_epoch,
                    "lr": scheduler.get_last_lr()[0],
                    **(
                        {"lrs": dict(zip([g["name"] for g in optimizer.param_groups], scheduler.get_last_lr()))}
                        if len(optimizer.param_groups) > 1
                        else {}
                    ),
                    "losses": {n: float(v) for n, v in zip(names, vals.tolist())},
                    "images_per_s": round(window_steps * cfg.batch_size / max(elapsed, 1e-9), 3),
                    "time": round(time.perf_counter() - t_start, 3),
                }
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                logger.log(record)
                pbar.set_postfix(loss=f"{record['losses']['loss']:.4g}", lr=f"{record['lr']:.2g}")
                window_t, window_steps, loss_sums = time.perf_counter(), 0, {}
            out_of_time = False
            if cfg.time_limit_s is not None:
                flag = torch.tensor([float(time.perf_counter() - t_loop >= cfg.time_limit_s)], device=info.device)
                if info.distributed:
                    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                out_of_time = bool(flag.item() > 0)
            last = step == total_steps or out_of_time
            if (cfg.eval_every and step % cfg.eval_every == 0) or (last and self.components.evaluator is not None):
                run_eval(step)
            if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or last:
                save_checkpoint(step)
            if out_of_time:
                if info.is_main:
                    logger.log({"type": "stop", "step": step, "reason": f"time_limit_s {cfg.time_limit_s} reached"})
                break
        pbar.close()

        final = None
        if info.is_main:
            final = save_safetensors(
                self.out / "final.safetensors", eval_model.state_dict(), self._metadata(model, step)
            )
            summary = {
                "steps": step,
                "best_metric": cfg.best_metric,
                "best_value": best["value"],
                "best_step": best["step"],
                "metrics": metrics,
                "seconds": round(time.perf_counter() - t_start, 3),
                "world_size": info.world_size,
            }
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        logger.close()
        barrier()
        best_path = self.out / "best.safetensors"
        return TrainResult(
            out=self.out,
            steps=step,
            final_weights=final,
            best_weights=best_path if best_path.exists() else None,
            best_metric=best["value"],
            metrics=metrics,
            seconds=time.perf_counter() - t_start,
        )


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)
