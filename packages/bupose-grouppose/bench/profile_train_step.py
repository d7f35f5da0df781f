"""Where one GroupPose training step spends its time on the CPU (one torch thread by default).

    python packages/bupose-grouppose/bench/profile_train_step.py [--steps 5] [--batch-size 8] \
        [--queries 30] [--layers 3] [--hidden 128] [--ffn 512] [--points 4] [--threads 1] [--ops]

Synthetic 128 px scenes (``bupose data synth --difficulty easy``, generated into a temporary folder),
resnet18 and the settings of ``train_synth.py``; the same pieces the engine uses (the head's DETR
augmentation, its codec, ``collate``, AdamW with the head's parameter groups, grad_clip 0.1). Prints
one JSON line: per-part wall and CPU seconds per step (data, backbone, encoder, selection + decoder,
per-layer heads, matcher, rest of the loss, backward, optimiser), the ``ms_deform_attn``
implementation in use and, with ``--ops``, the 15 most expensive torch operators.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


class Clock:
    """Accumulates wall and process CPU seconds per named part."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - w
            self.cpu[name] += time.process_time() - c


def _timed(clock: Clock, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clock.part(name):
            return fn(*args, **kwargs)

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ops", action="store_true", help="also print torch.profiler's top operators")
    ap.add_argument("--shapes", action="store_true", help="with --ops: also by input shape")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from bupose.core.data.synth import generate
    from bupose.core.engine.build import build_components, check_config
    from bupose.core.engine.config import load_config
    from bupose.core.engine.data import EncodedDataset, collate
    from bupose.core.engine.params import plan_param_groups, set_train_mode
    from bupose.core.ops import selected_implementation

    tmp = Path(tempfile.mkdtemp(prefix="gp-profile-"))
    n_images = a.batch_size * (a.steps + a.warmup)
    ann = generate(tmp / "synth", num_images=n_images, size=128, seed=0, difficulty="easy", progress=False)
    head = {"num_queries": a.queries, "enc_layers": a.layers, "dec_layers": a.layers, "hidden_dim": a.hidden,
            "dim_feedforward": a.ffn, "nheads": 8, "enc_n_points": a.points, "dec_n_points": a.points,
            "freeze_backbone_bn": False}  # fmt: skip
    cfg = load_config(None, {
        "head": "grouppose", "backbone": "resnet18", "data": str(ann.parent), "out": str(tmp / "run"),
        "input_size": a.input_size, "batch_size": a.batch_size, "workers": 0, "head_kwargs": head,
        "codec_kwargs": {"num_queries": a.queries},
    })  # fmt: skip
    comp = build_components(check_config(cfg))
    torch.manual_seed(0)
    model = comp.model_factory()
    plan = plan_param_groups(model, model.param_group_rules(), lr=1e-4, weight_decay=1e-4)
    opt = torch.optim.AdamW(plan.groups, lr=1e-4, weight_decay=1e-4)
    set_train_mode(model, plan.frozen_bn)
    data = EncodedDataset(comp.train_set, transform=comp.transform, encode=comp.encode, to_tensor=comp.to_tensor,
                          seed=0, sample_keys=comp.sample_keys)  # fmt: skip

    clock = Clock()
    gp = model.head
    for layer in gp.transformer.encoder.layers:
        layer.forward = _timed(clock, "encoder", layer.forward)
    for layer in gp.transformer.decoder.layers:
        layer.forward = _timed(clock, "decoder_layers", layer.forward)
    gp.transformer.forward = _timed(clock, "transformer_total", gp.transformer.forward)
    model.backbone.forward = _timed(clock, "backbone", model.backbone.forward)
    gp._levels = _timed(clock, "input_proj_pos", gp._levels)
    gp.criterion.matcher.forward = _timed(clock, "matcher", gp.criterion.matcher.forward)

    def step(i: int) -> float:
        with clock.part("data"):
            batch = collate([data[(0, i * a.batch_size + j)] for j in range(a.batch_size)])
        with clock.part("forward_total"):
            out = model(batch)
        with clock.part("loss_total"):
            losses = model.loss(out, batch)
            loss = sum(losses.values())
        with clock.part("backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with clock.part("optimizer"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            opt.step()
        return float(loss)

    for i in range(a.warmup):
        step(i)
    clock.wall.clear()
    clock.cpu.clear()
    prof = None
    if a.ops:
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True)
        prof.__enter__()
    w0, c0 = time.perf_counter(), time.process_time()
    losses = [step(a.warmup + i) for i in range(a.steps)]
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if prof is not None:
        prof.__exit__(None, None, None)
    per = {k: round(v / a.steps, 4) for k, v in clock.wall.items()}
    per_cpu = {k: round(v / a.steps, 4) for k, v in clock.cpu.items()}
    per["decoder_rest"] = round(per["transformer_total"] - per["encoder"] - per["decoder_layers"], 4)
    per["heads_rest"] = round(per["forward_total"] - per["backbone"] - per["input_proj_pos"]
                              - per["transformer_total"], 4)  # fmt: skip
    per["loss_rest"] = round(per["loss_total"] - per["matcher"], 4)
    res = {
        "step_wall_s": round(wall / a.steps, 3), "step_cpu_s": round(cpu / a.steps, 3), "parts_wall_s": per,
        "parts_cpu_s": per_cpu, "ms_deform_attn": selected_implementation("ms_deform_attn", "cpu"),
        "threads": torch.get_num_threads(), "losses": [round(x, 2) for x in losses], **vars(a),
    }  # fmt: skip
    print(json.dumps(res))
    if prof is not None:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        if a.shapes:
            print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=30, max_shapes_column_width=90))


if __name__ == "__main__":
    main()
