"""Training step time of the demo's model under CPU contention: torch threads, OMP_WAIT_POLICY, workers.

Each setting is measured in a fresh process (``OMP_WAIT_POLICY`` is read once, when torch's OpenMP
runtime loads), training the demo's recipe (``bupose.core.cli.demo.DEMO_SETTINGS``: DEKR +
``hrnet_w18_small`` at 128 px, batch 8) through the real engine (``bupose.core.engine.train``) with
``log_every=1``; the per-step time is ``batch / images_per_s`` of each logged step (data loading
included), the first ``--skip`` steps dropped. Settings and conditions are interleaved over
``--repeats`` rounds so that a change of the machine's load hits every setting alike. Conditions:

- ``natural``: whatever else runs on the machine;
- ``torch``: plus a competing process training the same model with 2 threads and the default wait
  policy (what a second demo of the old defaults did), started before and stopped after the block;
- ``spin``: plus ``--spinners`` pure-Python busy loops.

    python packages/bupose-core/bench/bench_threads.py [--repeats 2] [--steps 8] \
        [--conditions natural,torch] [--settings t2-default-w1,t1-passive-w1,...] [--json out.json]

A setting is ``t<threads>-<default|passive|active>-w<workers>``. Every figure is printed next to the
1-minute load average (``os.getloadavg()``) read before and after it, and as a ratio to the first
setting in the same condition.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_SETTINGS = (
    "t2-default-w1",
    "t1-default-w1",
    "t2-passive-w1",
    "t1-passive-w1",
    "t2-passive-w0",
    "t2-passive-w2",
    "t1-passive-w0",
    "t1-passive-w2",
)


def parse_setting(name: str) -> tuple[int, str, int]:
    """``t2-passive-w1`` -> (2, "passive", 1)."""
    try:
        t, wait, w = name.split("-")
        assert t[0] == "t" and w[0] == "w" and wait in ("default", "passive", "active")
        return int(t[1:]), wait, int(w[1:])
    except (ValueError, AssertionError, IndexError):
        raise SystemExit(f"bad setting {name!r}: expected t<threads>-<default|passive|active>-w<workers>") from None


def child_env(wait: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if wait != "default":
        env["OMP_WAIT_POLICY"] = wait.upper()
    return env


def run_child(args: argparse.Namespace) -> None:
    """Train ``--steps`` steps of the demo recipe; print per-step seconds as one JSON line."""
    from bupose.core.cli.demo import DEMO_SETTINGS
    from bupose.core.engine.build import train
    from bupose.core.engine.config import TrainConfig, apply_overrides

    train_settings = {k: v for k, v in DEMO_SETTINGS["train"].items() if k not in ("steps", "time_limit_s")}
    cfg = TrainConfig()
    apply_overrides(cfg, train_settings, source="demo settings")
    apply_overrides(cfg, {
        "head": DEMO_SETTINGS["head"], "backbone": DEMO_SETTINGS["backbone"], "data": args.data,
        "out": args.out, "steps": args.steps, "log_every": 1, "ckpt_every": 0, "workers": args.workers,
        "threads": args.threads, "progress": False, "tensorboard": False, "eval_every": 0,
        "time_limit_s": args.max_seconds,
    }, source="bench")  # fmt: skip
    train(cfg)
    records = [json.loads(line) for line in (Path(args.out) / "log.jsonl").read_text().splitlines()]
    per_step = [cfg.batch_size / r["images_per_s"] for r in records if r.get("type") == "train"]
    print(json.dumps({"per_step_s": per_step}), flush=True)


def start_competitor(kind: str, data: str, tmp: Path, spinners: int) -> list[subprocess.Popen[bytes]]:
    if kind == "natural":
        return []
    if kind == "spin":
        return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(spinners)]
    out = tmp / f"competitor-{time.time_ns()}"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", "--data", data, "--out", str(out), "--steps", "100000",
         "--threads", "2", "--workers", "1", "--max-seconds", "100000"],
        env=child_env("default"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (out / "log.jsonl").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)  # wait until it trains
    return [proc]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def measure(setting: str, data: str, tmp: Path, steps: int, skip: int, max_seconds: float) -> dict[str, Any]:
    threads, wait, workers = parse_setting(setting)
    out = tmp / f"{setting}-{time.time_ns()}"
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    res = subprocess.run(
        [sys.executable, __file__, "--child", "--data", data, "--out", str(out), "--steps", str(steps),
         "--threads", str(threads), "--workers", str(workers), "--max-seconds", str(max_seconds)],
        env=child_env(wait), capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{setting} failed:\n{res.stderr[-3000:]}")
    per_step = json.loads(res.stdout.strip().splitlines()[-1])["per_step_s"]
    per_step = per_step[skip:] if len(per_step) > skip else per_step  # a slow run stopped by --max-seconds
    return {
        "setting": setting, "steps_timed": len(per_step), "median_s": statistics.median(per_step), "per_step_s": per_step,
        "load_before": load_before, "load_after": os.getloadavg()[0], "wall_s": wall,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default=",".join(DEFAULT_SETTINGS))
    ap.add_argument("--conditions", default="natural,torch", help="natural, torch, spin (comma-separated)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--skip", type=int, default=2, help="first steps not counted (warm-up)")
    ap.add_argument("--max-seconds", type=float, default=45.0, help="stop a measurement's training loop after this")
    ap.add_argument("--spinners", type=int, default=2)
    ap.add_argument("--images", type=int, default=48, help="synthetic training scenes")
    ap.add_argument("--json", help="also write every figure here")
    # child mode (internal)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return
    settings = [s for s in args.settings.split(",") if s]
    for s in settings:
        parse_setting(s)
    conditions = [c for c in args.conditions.split(",") if c]
    for c in conditions:
        if c not in ("natural", "torch", "spin"):
            raise SystemExit(f"bad condition {c!r}: expected natural, torch or spin")
    from bupose.core.data.synth import generate

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp_name:
        tmp = Path(tmp_name)
        data = str(tmp / "data")
        generate(data, "coco17", args.images, 128, 1000, difficulty="easy", progress=False)
        print(f"cores {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))}, load {os.getloadavg()}", flush=True)
        for r in range(args.repeats):
            order = conditions if r % 2 == 0 else conditions[::-1]
            for cond in order:
                procs = start_competitor(cond, data, tmp, args.spinners)
                try:
                    for s in settings if r % 2 == 0 else settings[::-1]:
                        m = measure(s, data, tmp, args.steps, args.skip, args.max_seconds)
                        results.setdefault((cond, s), []).append(m)
                        print(f"round {r + 1} {cond:8s} {s:15s} {m['median_s']:6.2f} s/step  "
                              f"load {m['load_before']:.1f}->{m['load_after']:.1f}", flush=True)  # fmt: skip
                finally:
                    stop(procs)
    print()
    print("| condition | setting | median s/step | ratio to " + settings[0] + " | per round | load (1 min) |")
    print("|---|---|---|---|---|---|")
    rows = []
    for cond in conditions:
        base = statistics.median(m["median_s"] for m in results[(cond, settings[0])])
        for s in settings:
            ms = results[(cond, s)]
            med = statistics.median(m["median_s"] for m in ms)
            loads = [f"{m['load_before']:.1f}-{m['load_after']:.1f}" for m in ms]
            rows.append({"condition": cond, "setting": s, "median_s": med, "ratio": med / base, "runs": ms})
            per_round = " / ".join(f"{m['median_s']:.2f}" for m in ms)
            print(f"| {cond} | {s} | {med:.2f} | {med / base:.2f} | {per_round} | {' / '.join(loads)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
