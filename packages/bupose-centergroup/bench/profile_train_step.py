"""Time one CenterGroup training step on the CPU, piece by piece (not a unit test).

    python packages/bupose-centergroup/bench/profile_train_step.py [--stage 2] [--batch-size 8] [--size 128]
        [--threads 1] [--steps 5] [--profile] [--set KEY=VALUE ...]

Synthetic ``easy`` scenes, the engine's data path (augmentation, ``CenterGroupCodec`` targets,
``collate``) and the engine's optimiser / parameter groups / frozen batch norm on
``hrnet_w18_small``. After one warm-up step it prints the mean wall and CPU seconds per step and
per piece: backbone, detector head + embedding CNNs, heatmap averaging + node extraction, grouping
model, losses, backward, optimiser step. ``--profile`` adds torch.profiler's table (top operators
by self CPU time). ``--set`` takes TrainConfig overrides (e.g. ``head_kwargs={"num_layers": 2}``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from bupose.core.batch import collate
from bupose.core.data.synth import generate
from bupose.core.engine.build import build_components, check_config
from bupose.core.engine.config import TrainConfig, apply_overrides
from bupose.core.engine.data import EncodedDataset
from bupose.core.engine.params import plan_param_groups, set_train_mode

TIMES: dict[str, list[tuple[float, float]]] = defaultdict(list)


@contextmanager
def timed(name: str) -> Iterator[None]:
    """Record wall and process-CPU seconds of the block under ``name``."""
    w, c = time.perf_counter(), time.process_time()
    yield
    TIMES[name].append((time.perf_counter() - w, time.process_time() - c))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="cg_profile_"))
    data = generate(tmp / "data", num_images=4 * a.batch_size, size=a.size, seed=0, difficulty="easy", progress=False).parent
    cfg = TrainConfig(head="centergroup", backbone="hrnet_w18_small", data=str(data), out=str(tmp / "out"))
    items = [f"input_size={a.size}", f"batch_size={a.batch_size}", "workers=0", "device=cpu",
             f'head_kwargs={{"stage": {a.stage}}}', "lr=1e-3"]
    if a.stage == 2:
        items += ["grad_clip=1.0", 'augment={"max_rotation": 0}']
    apply_overrides(cfg, [*items, *a.overrides])
    comp = build_components(check_config(cfg))
    ds = EncodedDataset(comp.train_set, transform=comp.transform, encode=comp.encode, to_tensor=comp.to_tensor,
                        sample_keys=comp.sample_keys)
    torch.manual_seed(0)
    model = comp.model_factory()
    plan = plan_param_groups(model, model.param_group_rules(), lr=1e-3, weight_decay=0.0)
    opt = torch.optim.Adam(plan.groups, lr=1e-3)
    head = model.head
    # wrap the pieces so that their time is recorded
    for name, obj, attr in (("backbone", model, "backbone"),):
        mod = getattr(obj, attr)
        orig_fwd = mod.forward

        def fwd(*args, _f=orig_fwd, _n=name, **kw):  # type: ignore[no-untyped-def]
            with timed(_n):
                return _f(*args, **kw)

        mod.forward = fwd  # type: ignore[method-assign]
    for name, attr in (("detector", "detector"), ("heatmaps+nodes", "nodes"), ("grouping", "group")):
        orig = getattr(head, attr)

        def wrapped(*args, _f=orig, _n=name, **kw):  # type: ignore[no-untyped-def]
            with timed(_n):
                return _f(*args, **kw)

        setattr(head, attr, wrapped)
    orig_hm = head.heatmaps

    def hm_wrapped(*args, **kw):  # type: ignore[no-untyped-def]
        with timed("heatmaps+nodes"):
            return orig_hm(*args, **kw)

    head.heatmaps = hm_wrapped  # type: ignore[method-assign]

    batches = [collate([ds[(0, i * a.batch_size + k)] for k in range(a.batch_size)], size_divisibility=comp.size_divisibility)
               for i in range(4)]
    set_train_mode(model, plan.frozen_bn)

    def step(i: int) -> None:
        batch = batches[i % len(batches)]
        with timed("step"):
            with timed("forward"):
                out = model(batch)
            with timed("loss"):
                losses = model.loss(out, batch)
                loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            with timed("backward"):
                loss.backward()
            with timed("optimiser"):
                if a.stage == 2:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
        print(f"step {i}: " + ", ".join(f"{k} {float(v):.4g}" for k, v in losses.items()), flush=True)

    step(0)
    TIMES.clear()
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for i in range(1, a.steps + 1):
                step(i)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=20))
    else:
        for i in range(1, a.steps + 1):
            step(i)
    n = len(TIMES["step"])
    print(f"stage {a.stage}, batch {a.batch_size}, input {a.size}, {torch.get_num_threads()} thread(s), {n} steps "
          f"(mean per step; wall / CPU seconds):")
    for name, vals in TIMES.items():
        w = sum(v[0] for v in vals) / n
        c = sum(v[1] for v in vals) / n
        print(f"  {name:16s} {w:8.3f} s  {c:8.3f} s")


if __name__ == "__main__":
    main()
