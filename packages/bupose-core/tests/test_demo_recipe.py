"""The demo's fixed training recipe and its verdict (the heavy phases are replaced by cheap fakes)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bupose.core.cli import demo
from bupose.core.engine.trainer import TrainResult


class FakePhases:
    """Stands in for data generation, training, evaluation and ``bupose run``; records the config."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, ap: float, steps_done: int | None = None) -> None:
        self.ap = ap
        self.steps_done = steps_done
        self.configs: list[Any] = []
        monkeypatch.setattr(demo, "_check_components", lambda settings: None)
        monkeypatch.setattr(demo, "_make_data", lambda settings, data, progress: data.mkdir(parents=True))
        monkeypatch.setattr(demo, "_train", self.train)
        monkeypatch.setattr(demo, "_evaluate", lambda *a: {"AP": self.ap, "AP50": 0.9, "AP75": 0.4})
        monkeypatch.setattr(demo, "_run_test", lambda cfg, w, d, out, opts: (out / "sheet.png", {"AP": 0.5}))

    def train(self, cfg: Any) -> TrainResult:
        self.configs.append(cfg)
        out = Path(cfg.out)
        out.mkdir(parents=True)
        steps = cfg.steps if self.steps_done is None else self.steps_done
        record = {"type": "train", "step": steps, "losses": {"loss": 0.0123}}
        (out / "log.jsonl").write_text(json.dumps(record) + "\n")
        return TrainResult(out=out, steps=steps, final_weights=out / "final.safetensors", best_weights=None,
                           best_metric=None, metrics={}, seconds=1.0)  # fmt: skip


def invoke(tmp_path: Path, *sets: str) -> Any:
    args = ["--out", str(tmp_path / "d"), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    return CliRunner().invoke(demo.demo_command, args)


def test_recipe_is_fixed_and_documented() -> None:
    train = demo.DEMO_SETTINGS["train"]
    assert train["steps"] == 600 and isinstance(train["steps"], int)
    assert (train["batch_size"], train["input_size"], train["optimizer"], train["lr"]) == (8, 128, "adam", 4e-3)
    assert (train["warmup_steps"], train["lr_schedule"], train["lr_milestones"], train["lr_factor"]) == (
        30, "multistep", [0.8], 0.1)  # fmt: skip
    # what degraded best on a busy machine (bench/bench_threads.py): batches made in the training
    # process, torch threads from the engine
    assert (train["workers"], train["threads"]) == (0, 0)
    # the time limit is a guard (about 3x the quiet training time), not a budget that picks the steps
    assert train["time_limit_s"] >= 2.5 * train["steps"] * demo.QUIET_SECONDS_PER_STEP
    assert "train_budget_s" not in demo.DEMO_SETTINGS and not hasattr(demo, "_time_one_step")


def test_steps_come_from_the_recipe_never_from_timing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a machine where every clock reading is 50 s later than the last one: a probe would pick few steps
    clock = itertools.count(0.0, 50.0)
    monkeypatch.setattr(demo.time, "perf_counter", lambda: next(clock))
    fake = FakePhases(monkeypatch, ap=0.6)
    result = invoke(tmp_path, "train.time_limit_s=1e9")
    assert result.exit_code == 0, result.output
    (cfg,) = fake.configs
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.warmup_steps, cfg.lr_milestones) == (600, 8, 4e-3, 30, [0.8])
    assert cfg.time_limit_s == 1e9
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["planned_steps"] == summary["train_steps"] == 600
    assert summary["goal_met"] is True and summary["failure"] is None


def test_overriding_train_steps_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePhases(monkeypatch, ap=0.7)
    result = invoke(tmp_path, "train.steps=800", "train.lr=2e-3")
    assert result.exit_code == 0, result.output
    assert (fake.configs[0].steps, fake.configs[0].lr) == (800, 2e-3)
    assert "800 steps of 8 images" in result.output and "x0.1 at step 640" in result.output


def test_success_prints_one_summary_line_per_phase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakePhases(monkeypatch, ap=0.61)
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    for phase in ("data:", "train:", "eval:", "run:", "done in"):
        assert f"[demo] {phase}" in result.output, phase
    assert "600 of 600 steps" in result.output and "steps/s" in result.output and "final loss 0.0123" in result.output
    assert "validation AP 0.610 (goal >= 0.5): goal reached" in result.output
    assert "Goal reached." in (tmp_path / "d" / "summary.md").read_text()


def test_ap_below_goal_fails_with_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakePhases(monkeypatch, ap=0.31)
    result = invoke(tmp_path)
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: demo FAILED: validation AP 0.310 is below the goal of 0.5")
    assert "all 600 steps ran" in line and "load average" in line and "s/step" in line
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["goal_met"] is False and summary["failure"] == line.removeprefix("Error: ")
    assert "demo FAILED" in (tmp_path / "d" / "summary.md").read_text()


def test_fewer_steps_than_the_recipe_is_named_as_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakePhases(monkeypatch, ap=0.2)
    result = invoke(tmp_path, "train.steps=100")
    assert result.exit_code == 1
    assert "100 training steps instead of the recipe's 600" in result.output


def test_time_limit_hit_fails_even_above_the_goal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakePhases(monkeypatch, ap=0.55, steps_done=250)
    result = invoke(tmp_path)
    assert result.exit_code == 1
    assert "STOPPED EARLY" in result.output
    line = result.output.strip().splitlines()[-1]
    assert "stopped early at step 250 of 600" in line and "train.time_limit_s=1800.0 reached" in line
    assert "expect a lower AP than the recipe's ~0.62" in line
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["stopped_early"] is True


def test_verdict_names_a_busy_machine() -> None:
    common: dict[str, Any] = dict(goal_ap=0.5, steps_planned=600, recipe_steps=600, time_limit_s=1140.0,
                                  load_average=(7.5, 6.0, 4.0))  # fmt: skip
    assert demo.demo_verdict(val_ap=0.6, steps_done=600, train_loop_s=380.0, **common) is None
    slow = demo.demo_verdict(val_ap=0.3, steps_done=380, train_loop_s=1140.0, **common)
    assert slow is not None and "machine was busy" in slow and "3.00 s/step" in slow and "7.5/6.0/4.0" in slow
    quiet_cut = demo.demo_verdict(val_ap=0.3, steps_done=500, train_loop_s=300.0, **common)
    assert quiet_cut is not None and "stopped early" in quiet_cut and "machine was busy" not in quiet_cut


@pytest.mark.parametrize(("cpus", "procs", "expected"), [(2, 1, 2), (2, 2, 1), (16, 4, 4), (3, 2, 1), (1, 4, 1)])
def test_default_threads_share_the_allowed_cpus_whatever_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int, procs: int, expected: int
) -> None:
    import torch

    from bupose.core.engine import trainer as trainer_mod
    from bupose.core.engine.config import TrainConfig
    from bupose.core.engine.distributed import DistInfo
    from bupose.core.engine.trainer import Trainer

    monkeypatch.setattr(trainer_mod.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(trainer_mod.os, "cpu_count", lambda: 64)  # the machine's count is not what counts
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = TrainConfig(head="h", backbone="b", data="d", out=str(tmp_path))
    info = DistInfo(rank=0, world_size=procs, local_rank=0, local_world_size=procs, device=torch.device("cpu"))
    before = torch.get_num_threads()
    try:
        for load in (0.0, 9.5):  # reproducible: the load average plays no part
            monkeypatch.setattr(trainer_mod.os, "getloadavg", lambda load=load: (load, load, load), raising=False)
            torch.set_num_threads(3)
            Trainer(cfg, None)._setup_threads(info)  # type: ignore[arg-type]
            assert torch.get_num_threads() == expected
        # an explicit setting wins, and OMP_NUM_THREADS is left to torch
        cfg2 = TrainConfig(head="h", backbone="b", data="d", out=str(tmp_path), threads=3)
        Trainer(cfg2, None)._setup_threads(info)  # type: ignore[arg-type]
        assert torch.get_num_threads() == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        Trainer(cfg, None)._setup_threads(info)  # type: ignore[arg-type]
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


_PROBE = """
import os, sys
seen = []
class BlockTorch:  # records the wait policy torch would load with, and keeps the probe cheap
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
            raise ImportError("torch blocked by the test")
sys.meta_path.insert(0, BlockTorch())
from bupose.core.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print()
print(os.environ.get("OMP_WAIT_POLICY"), *seen)
"""


@pytest.mark.parametrize("command", [["train", "--head", "nope", "--data", "d", "--out", "o"], ["demo", "--out", "o", "--no-progress",
                                     "--set", "train_images=1", "--set", "val_images=1", "--set", "test_images=1"]])
def test_training_commands_make_openmp_wait_passively(command: list[str], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["BUPOSE_OPENMP_PASSIVE"] = "1"  # as on a busy machine (the automatic rule is tested below)
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        cwd = tmp_path / str(given)
        cwd.mkdir()
        run = subprocess.run([sys.executable, "-c", _PROBE, *command], capture_output=True, text=True, cwd=cwd,
                             env=env if given is None else {**env, "OMP_WAIT_POLICY": given}, timeout=120)  # fmt: skip
        words = run.stdout.strip().splitlines()[-1].split() if run.stdout.strip() else []
        # set before anything imported torch (when the command got that far)
        assert words and set(words) == {expected}, run.stdout + run.stderr


def test_passive_openmp_only_when_the_machine_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from bupose.core.cli import _openmp

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("BUPOSE_OPENMP_PASSIVE", raising=False)
    monkeypatch.setattr(_openmp, "sys", types.SimpleNamespace(modules={"torch": object()}))
    assert _openmp.prefer_passive_openmp(load=9.0) is False  # torch already loaded: too late to choose
    monkeypatch.setattr(_openmp, "sys", types.SimpleNamespace(modules={}))
    assert _openmp.machine_busy(load=1.6, cpus=2) and not _openmp.machine_busy(load=1.0, cpus=2)
    assert _openmp.prefer_passive_openmp(load=0.1) is False and "OMP_WAIT_POLICY" not in __import__("os").environ
    monkeypatch.setenv("BUPOSE_OPENMP_PASSIVE", "0")
    assert _openmp.prefer_passive_openmp(load=99.0) is False
    monkeypatch.setenv("BUPOSE_OPENMP_PASSIVE", "auto")
    assert _openmp.prefer_passive_openmp(load=99.0) is True
    assert __import__("os").environ.pop("OMP_WAIT_POLICY") == "PASSIVE"
