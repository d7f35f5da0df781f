"""Training engine: configuration, sampling, random states, checkpoints, the loop, exact resume."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bupose.core.engine.checkpoint import (
    capture_rng_state,
    read_training_checkpoint,
    restore_rng_state,
    write_training_checkpoint,
)
from bupose.core.engine.config import ConfigError, TrainConfig, load_config, parse_override
from bupose.core.engine.data import StepBatchSampler
from bupose.core.engine.trainer import Trainer, resolve_optim_settings
from bupose.core.weights import CheckpointError, read_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
import test_engine_helpers as tiny

BASE = ["head=tiny", "backbone=tiny", "data=tiny", "input_size=32", "progress=false", "tensorboard=false",
        "workers=0", "batch_size=4"]


def cfg_for(out: Path, *extra: str) -> TrainConfig:
    return load_config(None, [*BASE, f"out={out}", *extra])


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    tensors, meta = read_checkpoint(out / "final.safetensors")
    assert meta["head"] == "tiny" and meta["layout"] == "tiny3"
    return tensors


# ---------------------------------------------------------------------------- configuration
def test_unknown_key_is_one_clear_line() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["lr_steps=3"])
    msg = str(e.value)
    assert "unknown key 'lr_steps'" in msg and "\n" not in msg


def test_unknown_key_suggests_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        load_config(None, ["batchsize=3"])


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("batch_size=abc", "batch_size must be an integer, got str 'abc'"),
        ("batch_size=2.5", "batch_size must be an integer"),
        ("lr=fast", "lr must be a number or null"),
        ("sync_bn=1", "sync_bn must be true/false"),
        ("lr_milestones=0.5", "lr_milestones must be a list of a number or null"),
        ("head_kwargs=3", "head_kwargs must be a mapping"),
    ],
)
def test_wrong_type_names_key_and_expectation(item: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [item])


def test_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="amp must be one of none, bf16, fp16"):
        load_config(None, [*BASE, "out=x", "amp=fp8"])
    with pytest.raises(ConfigError, match="lr_milestones are fractions"):
        load_config(None, [*BASE, "out=x", "lr_milestones=[90, 120]"])
    with pytest.raises(ConfigError, match="'out' is required"):
        load_config(None, BASE)


def test_override_parsing() -> None:
    assert parse_override("lr=1e-3") == ("lr", 1e-3)
    assert parse_override("layout=coco17") == ("layout", "coco17")
    assert parse_override("val_data=null") == ("val_data", None)
    assert parse_override("lr_milestones=[0.5, 0.75]") == ("lr_milestones", [0.5, 0.75])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("lr")
    cfg = load_config(None, [*BASE, "out=x", "head_kwargs.width=16", "lr=1"])
    assert cfg.head_kwargs == {"width": 16} and cfg.lr == 1.0 and isinstance(cfg.lr, float)


def test_config_files_json_and_toml(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"batch_size": 6, "augment": {"max_rotation": 10}}))
    (tmp_path / "b.toml").write_text('batch_size = 12\nlr_milestones = [0.5]\n[head_kwargs]\nwidth = 4\n')
    a = load_config(tmp_path / "a.json", [*BASE[:4], "out=x"])
    assert a.batch_size == 6 and a.augment == {"max_rotation": 10}
    b = load_config(tmp_path / "b.toml", [*BASE[:4], "out=x", "batch_size=2"])
    assert b.batch_size == 2 and b.lr_milestones == [0.5] and b.head_kwargs == {"width": 4}
    (tmp_path / "bad.toml").write_text("batch_size = [")
    with pytest.raises(ConfigError, match=r"bad.toml: cannot be parsed"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "typo.json").write_text(json.dumps({"epochz": 3}))
    with pytest.raises(ConfigError, match=r"config file .*typo.json: unknown key 'epochz'; did you mean 'epochs'"):
        load_config(tmp_path / "typo.json")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")


def test_method_defaults_then_fallback() -> None:
    cfg = load_config(None, [*BASE, "out=x"])
    s = resolve_optim_settings(cfg, {"lr": 2e-3, "lr_schedule": "multistep", "lr_milestones": [0.5]})
    assert s["optimizer"] == "adam" and s["lr"] == 2e-3 and s["lr_milestones"] == [0.5]
    s = resolve_optim_settings(cfg, {})
    assert s == {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "lr_schedule": "constant",
                 "lr_milestones": [], "lr_factor": 0.1}
    cfg.lr = 0.5
    assert resolve_optim_settings(cfg, {"lr": 2e-3})["lr"] == 0.5


# ---------------------------------------------------------------------------- sampling
def test_rank_slices_make_the_single_process_batch() -> None:
    single = StepBatchSampler(20, 8, total_steps=7, seed=3)
    ranks = [StepBatchSampler(20, 8, rank=r, world_size=2, total_steps=7, seed=3) for r in range(2)]
    one = list(single)
    two = [list(r) for r in ranks]
    assert len(one) == 7 and single.steps_per_epoch == 2
    for step in range(7):
        assert one[step] == two[0][step] + two[1][step]
    # every epoch is a fresh permutation covering distinct samples
    assert len({i for _, i in one[0] + one[1]}) == 16
    assert [i for _, i in one[0]] != [i for _, i in one[2]]


def test_sampler_resumes_mid_epoch() -> None:
    full = list(StepBatchSampler(20, 4, total_steps=9, seed=1))
    resumed = list(StepBatchSampler(20, 4, total_steps=9, seed=1, start_step=6))
    assert resumed == full[6:]


def test_sampler_rejects_bad_batch() -> None:
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        StepBatchSampler(20, 8, world_size=3, total_steps=1)
    with pytest.raises(ValueError, match="fewer than one batch"):
        StepBatchSampler(3, 8, total_steps=1)


# ---------------------------------------------------------------------------- random states
def test_rng_state_round_trip_through_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in the legacy state
    state = capture_rng_state()
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    write_training_checkpoint(tmp_path / "c.pt", {"rng": [state], "config": "{}"})
    loaded = read_training_checkpoint(tmp_path / "c.pt")
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(loaded["rng"][0])
    assert (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist()) == expected


def test_read_rejects_foreign_files(tmp_path: Path) -> None:
    torch.save({"a": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a bupose training checkpoint"):
        read_training_checkpoint(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="no training checkpoint"):
        read_training_checkpoint(tmp_path / "missing.pt")


# ---------------------------------------------------------------------------- the loop
def test_training_learns_and_writes_everything(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = cfg_for(out, "steps=48", "log_every=4", "eval_every=24", "ckpt_every=16", "ema_decay=0.9")
    result = Trainer(cfg, tiny.make_components(with_eval=True)).fit()
    assert result.steps == 48
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [24, 48]
    assert train[-1]["losses"]["loss"] < 0.6 * train[0]["losses"]["loss"]
    assert all(r["images_per_s"] > 0 for r in train)
    # the codec's train_defaults: lr 5e-3, x0.1 at half of the run
    assert train[0]["lr"] == pytest.approx(5e-3) and train[-1]["lr"] == pytest.approx(5e-4)
    assert json.loads((out / "config.json").read_text())["steps"] == 48
    ckpt = read_training_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["step"] == 48 and set(ckpt) >= {"model", "optimizer", "scheduler", "scaler", "ema", "rng", "config"}
    assert ckpt["config"]["ema_decay"] == 0.9
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_value"] == result.best_metric and result.best_weights is not None
    # the exported model is the EMA, loadable into a fresh model
    model = tiny.make_model()
    model.load_state_dict(final_weights(out))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ckpt["ema"]["module"][k])


def test_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, "steps=2")
    Trainer(cfg, tiny.make_components()).fit()
    with pytest.raises(ConfigError, match="already holds a training checkpoint; pass --resume"):
        Trainer(cfg_for(tmp_path, "steps=2"), tiny.make_components()).fit()
    with pytest.raises(ConfigError, match=r"--resume: batch_size differ .*batch_size=4"):
        Trainer(cfg_for(tmp_path, "steps=4", "batch_size=8"), tiny.make_components(), resume=True).fit()


class _Interrupt(Exception):
    pass


def _interrupting(components, after_samples: int):  # type: ignore[no-untyped-def]
    calls = {"n": 0}
    encode = components.encode

    def enc(sample):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > after_samples:
            raise _Interrupt
        return encode(sample)

    components.encode = enc
    return components


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_resume_continues_exactly(tmp_path: Path, amp: str) -> None:
    extra = ("steps=20", "ckpt_every=3", f"amp={amp}", "grad_clip=1.0", "ema_decay=0.8", "warmup_steps=4", "log_every=1")
    Trainer(cfg_for(tmp_path / "a", *extra), tiny.make_components(dropout=0.2)).fit()
    # interrupted while building the batch of step 12: the last checkpoint is step 9
    with pytest.raises(_Interrupt):
        Trainer(cfg_for(tmp_path / "b", *extra), _interrupting(tiny.make_components(dropout=0.2), 11 * 4)).fit()
    assert read_training_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 9
    Trainer(cfg_for(tmp_path / "b", *extra), tiny.make_components(dropout=0.2), resume=True).fit()
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # the log of the resumed run continues after step 9
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == [*range(1, 12), *range(10, 21)]


def test_different_seed_different_weights(tmp_path: Path) -> None:
    Trainer(cfg_for(tmp_path / "a", "steps=3"), tiny.make_components()).fit()
    Trainer(cfg_for(tmp_path / "b", "steps=3", "seed=1"), tiny.make_components()).fit()
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_workers_do_not_change_the_result(tmp_path: Path) -> None:
    Trainer(cfg_for(tmp_path / "a", "steps=4"), tiny.make_components()).fit()
    Trainer(cfg_for(tmp_path / "b", "steps=4", "workers=2"), tiny.make_components()).fit()
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_sync_bn_on_cpu_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sync_bn needs CUDA"):
        Trainer(cfg_for(tmp_path, "steps=2", "sync_bn=true", "device=cpu"), tiny.make_components()).fit()
    assert not (tmp_path / "log.jsonl").exists()


def test_time_limit_stops_early_and_exports(tmp_path: Path) -> None:
    result = Trainer(cfg_for(tmp_path, "steps=1000", "time_limit_s=0.000001"), tiny.make_components()).fit()
    assert result.steps == 1 and (tmp_path / "final.safetensors").exists()
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[-1]["type"] == "stop" and records[-1]["step"] == 1
    assert read_training_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 1
