"""The inference autocast rule: fp16 on CUDA, bf16 on CPUs with native bf16, fp32 (warned) elsewhere."""

from __future__ import annotations

import warnings

import pytest
import torch

from bupose.core import amp


def _dtype_inside(ctx: object) -> torch.dtype:
    with ctx:  # type: ignore[attr-defined]
        return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype


def test_disabled_is_float32() -> None:
    assert _dtype_inside(amp.autocast("cpu", False)) == torch.float32


def test_cpu_without_native_bf16_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: False)
    amp._warn_once.cache_clear()
    with pytest.warns(RuntimeWarning, match="no native bfloat16"):
        ctx = amp.autocast("cpu", True)
    assert _dtype_inside(ctx) == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        amp.autocast("cpu", True)  # warned once per process only


def test_cpu_with_native_bf16_autocasts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: True)
    assert _dtype_inside(amp.autocast(torch.device("cpu"), True)) == torch.bfloat16


def test_native_check_answers_a_bool() -> None:
    assert isinstance(amp.cpu_has_native_bf16(), bool)


def test_emulated_bf16_can_be_forced_for_accuracy_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setenv("BUPOSE_AMP_EMULATED_BF16", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _dtype_inside(amp.autocast("cpu", True)) == torch.bfloat16
