"""``bupose demo``: the whole product on embedded synthetic data, on a CPU, in a few minutes.

Steps: generate synthetic train/val/test scenes -> train DEKR on the small HRNet -> ``bupose eval``
(model mode) on the validation scenes -> ``bupose run`` on the held-out test scenes (results +
overlays + a contact sheet) -> ``OUT/summary.json`` and ``OUT/summary.md`` with the AP reached, the
time taken and the settings used.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from . import BuposeError

__all__ = ["DEMO_SETTINGS", "demo_command", "run_demo"]

DEMO_SETTINGS: dict[str, Any] = {
    "head": "dekr",
    "backbone": "hrnet_w18_small",
    "image_size": 128,
    "difficulty": "easy",
    "train_images": 400,
    "val_images": 50,
    "test_images": 12,
    "train_budget_s": 380.0,
    "test_options": {"match_hmp": True},
    "train": {
        "input_size": 128,
        "batch_size": 8,
        "steps": "auto",
        "time_limit_s": 420.0,
        "lr": 4e-3,
        "warmup_steps": 30,
        "lr_schedule": "multistep",
        "lr_milestones": [0.8],
        "workers": 1,
        "ckpt_every": 100,
        "log_every": 10,
        "eval_every": 0,
        "head_kwargs": {"offset_channels_per_joint": 8, "offset_blocks": 1, "offset_loss_factor": 0.1},
        "augment": {"scale_range": [0.8, 1.25], "max_rotation": 15.0, "max_translate": 10.0},
        "tensorboard": False,
    },
}
"""What the demo runs; ``run_demo(overrides=...)`` changes any of it (``train`` keys are TrainConfig keys).

``train.steps = "auto"`` times a few training steps on this machine first and picks the number of
steps that fits ``train_budget_s``; ``train.time_limit_s`` is the hard stop. ``test_options`` are
test-time options of the head's pipeline used by the evaluation and by ``bupose run``: DEKR's official
``match_hmp`` (``TEST.MATCH_HMP``: every joint regressed from the centre snaps to the nearest heatmap
peak, then a Gaussian refinement) localises joints far better than the offsets alone after a few
minutes of training."""


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _say(msg: str) -> None:
    import click

    click.echo(f"[demo] {msg}", err=False)


def run_demo(
    out: str | Path, *, overrides: Mapping[str, Any] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the summary (also written as ``out/summary.json``)."""
    from ..data.synth import generate
    from ..engine.build import train
    from ..engine.config import TrainConfig, apply_overrides
    from ..plugins import get_registry
    from . import build_cli
    from .eval import model_mode

    settings = _merge(DEMO_SETTINGS, overrides or {})
    registry = get_registry()
    registry.get("heads", settings["head"])  # clear "unknown head ... pip install" errors up front
    registry.get("backbones", settings["backbone"])
    out = Path(out)
    if (out / "train" / "checkpoints" / "last.pt").exists():
        raise FileExistsError(f"{out} already holds a demo run; choose another --out or delete it")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    # 1. data
    size, diff = int(settings["image_size"]), str(settings["difficulty"])
    data = out / "data"
    for split, n, seed in (("train", "train_images", 0), ("val", "val_images", 1), ("test", "test_images", 2)):
        _say(f"generating {settings[n]} synthetic {split} scenes ({size}x{size}, {diff})")
        generate(data / split, "coco17", int(settings[n]), size, 1000 + seed, difficulty=diff, progress=progress)
    timings["data_s"] = time.perf_counter() - t0

    # 2. train
    t1 = time.perf_counter()
    cfg = TrainConfig()
    train_settings = dict(settings["train"])
    auto_steps = train_settings.get("steps") == "auto"
    if auto_steps:
        train_settings["steps"] = 1
    apply_overrides(cfg, train_settings, source="demo settings")
    apply_overrides(
        cfg,
        {"head": settings["head"], "backbone": settings["backbone"], "data": str(data / "train"),
         "out": str(out / "train"), "progress": progress},
        source="demo",
    )
    cfg.validate()
    if auto_steps:
        per_step = _time_one_step(cfg)
        cfg.steps = int(min(3000, max(20, float(settings["train_budget_s"]) / per_step)))
        _say(f"one training step takes {per_step:.2f} s here -> {cfg.steps} steps fit the {settings['train_budget_s']:.0f} s budget")
        settings = _merge(settings, {"train": {"steps_chosen": cfg.steps, "seconds_per_step": round(per_step, 3)}})
    _say(f"training {cfg.head} + {cfg.backbone}: {cfg.steps} steps of {cfg.batch_size} images at {cfg.input_size} px")
    result = train(cfg)
    timings["train_s"] = time.perf_counter() - t1
    weights = out / "train" / "final.safetensors"

    # 3. evaluate on the validation scenes (bupose eval, model mode)
    t2 = time.perf_counter()
    test_options = dict(settings.get("test_options") or {})
    opt_args = [f"--option={k}={json.dumps(v)}" for k, v in test_options.items()]
    _say(f"evaluating on the validation scenes (bupose eval{''.join(' ' + a for a in opt_args)})")
    metrics = model_mode(
        head=cfg.head, backbone=cfg.backbone, weights=str(weights), data=str(data / "val"),
        batch_size=8, save_results=str(out / "val_results.json"), output=str(out / "val_metrics.json"),
        progress=progress, pipeline_options=test_options,
    )
    timings["eval_s"] = time.perf_counter() - t2

    # 4. bupose run on held-out test scenes: results + overlays
    t3 = time.perf_counter()
    _say("running bupose run on the held-out test scenes")
    cli = build_cli()
    cli.main(
        ["run", "--head", cfg.head, "--backbone", cfg.backbone, "--weights", str(weights),
         "--annotations", str(data / "test" / "annotations.json"), "--output", str(out / "test_run"),
         "--vis-threshold", "0.2", *opt_args, str(data / "test" / "images")],
        standalone_mode=False,
    )
    from ..vis import contact_sheet

    sheet = contact_sheet(out / "test_run" / "overlays", out / "test_overlays.png", columns=4, cell=256)
    test_metrics = _test_metrics(out / "test_run" / "results.json", data / "test" / "annotations.json")
    timings["run_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0

    summary = {
        "val_AP": metrics["AP"],
        "val_metrics": metrics,
        "test_AP": test_metrics.get("AP"),
        "train_steps": result.steps,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "weights": str(weights),
        "overlays": str(out / "test_run" / "overlays"),
        "contact_sheet": str(sheet),
        "settings": settings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "summary.md").write_text(_markdown(summary), encoding="utf-8")
    _say(
        f"done in {timings['total_s']:.0f} s: validation AP {metrics['AP']:.3f} "
        f"(goal >= 0.5); overlays in {summary['overlays']}, contact sheet {sheet}"
    )
    return summary


def _time_one_step(cfg: Any, repeats: int = 4) -> float:
    """Seconds per training step of ``cfg``'s model on one real batch (after one warm-up step)."""
    import torch

    from ..engine.build import build_components, check_config
    from ..engine.data import EncodedDataset, collate_targets

    comps = build_components(check_config(cfg))
    ds = EncodedDataset(comps.train_set, transform=comps.transform, encode=comps.encode,
                        to_tensor=comps.to_tensor, seed=cfg.seed)
    batch = collate_targets([ds[(0, i)] for i in range(cfg.batch_size)])
    images = batch.pop("image")
    state = torch.get_rng_state()
    model = comps.model_factory().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        loss = sum(model.loss(model(images), batch).values())
        opt.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    torch.set_rng_state(state)
    # the fastest repeat is the least disturbed by other load; augmentation and encoding overlap
    # little with the network on 2 cores: add 10 %
    return 1.1 * min(times)


def _test_metrics(results: Path, annotations: Path) -> dict[str, float]:
    from ..eval import evaluate

    try:
        return evaluate(str(results), str(annotations), layout="coco17")
    except Exception:  # noqa: BLE001 - the test metric is informative only
        return {}


def _markdown(s: Mapping[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in s["val_metrics"].items())
    t = s["timings_s"]
    return (
        "# bupose demo\n\n"
        f"DEKR + small HRNet trained for {s['train_steps']} steps on synthetic scenes (CPU).\n\n"
        f"Test-time options (evaluation and bupose run): `{json.dumps(s['settings'].get('test_options') or {})}`"
        " (`match_hmp` is DEKR's official TEST.MATCH_HMP: joints snap to heatmap peaks).\n\n"
        f"**Validation AP: {s['val_AP']:.4f}** (goal >= 0.5); held-out test AP: "
        f"{s['test_AP'] if s['test_AP'] is None else round(s['test_AP'], 4)}\n\n"
        "| metric | value |\n|---|---|\n" + rows + "\n\n"
        f"Time: data {t['data_s']} s, training {t['train_s']} s, evaluation {t['eval_s']} s, "
        f"bupose run {t['run_s']} s, total {t['total_s']} s.\n\n"
        f"Overlays: `{s['overlays']}`; contact sheet: `{s['contact_sheet']}`; weights: `{s['weights']}`.\n\n"
        "Settings:\n\n```json\n" + json.dumps(s["settings"], indent=2) + "\n```\n"
    )


@click.command("demo")
@click.option("--out", default="bupose-demo", show_default=True, help="Folder for data, run, results, overlays.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Change a demo setting, e.g. train.steps=200 or train_images=300 (repeatable).")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
def demo_command(out: str, sets: tuple[str, ...], no_progress: bool) -> None:
    """Generate synthetic scenes, train DEKR + small HRNet on the CPU, evaluate, run on held-out images."""
    from ..engine.config import ConfigError, parse_override

    overrides: dict[str, Any] = {}
    try:
        for item in sets:
            key, value = parse_override(item)
            node = overrides
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        summary = run_demo(out, overrides=overrides, progress=not no_progress)
    except (ConfigError, FileExistsError) as exc:
        raise BuposeError(str(exc)) from None
    click.echo(f"validation AP {summary['val_AP']:.4f}; summary: {out}/summary.md")
