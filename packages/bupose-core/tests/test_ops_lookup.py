from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from bupose.core import ops
from bupose.core.plugins import reset_registry

FAKE_OPS = """
from bupose.core import hookimpl, OpSpec

def ok():
    return True, ""

def broken():
    return False, "extension failed to build: no compiler"

def fast(*a):
    return "fast"

def slow(*a):
    return "slow"

@hookimpl
def bupose_register_ops(register):
    register(OpSpec(name="m_add", implementation="reference", priority=0, factory="fakeplug_ops:slow"))
    register(OpSpec(name="m_add", implementation="cpp", priority=10, devices=("cpu",),
                    factory="fakeplug_ops:fast", available="fakeplug_ops:ok"))
    register(OpSpec(name="m_add", implementation="cuda", priority=20, devices=("cuda",),
                    factory="fakeplug_ops:fast", available="fakeplug_ops:broken"))
"""


@pytest.fixture
def with_fake_ops(fake_site: Path, fake_dist, monkeypatch: pytest.MonkeyPatch):
    fake_dist(fake_site, "fake-ops", "0.1", {"fakeplug_ops": FAKE_OPS}, {"fakeops": "fakeplug_ops"})
    importlib.invalidate_caches()
    monkeypatch.setenv("BUPOSE_LOAD_PLUGINS", "fakeops")
    reset_registry()
    ops.clear_op_cache()
    yield
    reset_registry()
    ops.clear_op_cache()


def test_best_available_wins(with_fake_ops, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ops.get_op("m_add", "cpu")() == "fast"
    assert ops.selected_implementation("m_add", "cpu") == "cpp"
    # cuda implementation is unavailable -> falls back to the reference, which runs anywhere
    assert ops.selected_implementation("m_add", "cuda") == "reference"
    status = {i["implementation"]: i for i in ops.op_status()["m_add"]}
    assert status["cuda"]["available"] is False and "no compiler" in status["cuda"]["reason"]
    monkeypatch.setenv("BUPOSE_OPS", "reference")
    assert ops.get_op("m_add", "cpu")() == "slow"
    monkeypatch.setenv("BUPOSE_OPS", "cuda")
    with pytest.raises(ops.OpUnavailableError, match="no compiler"):
        ops.get_op("m_add", "cpu")
    monkeypatch.setenv("BUPOSE_OPS", "nonsense")
    with pytest.raises(ops.OpUnavailableError, match="no implementation 'nonsense'"):
        ops.get_op("m_add", "cpu")


def test_unknown_op_suggests_package(with_fake_ops) -> None:
    from bupose.core.plugins import UnknownComponentError

    with pytest.raises(UnknownComponentError, match="m_add"):
        ops.get_op("m_ad")


def test_reference_notice_once_with_the_reason_and_fix(with_fake_ops, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    monkeypatch.delenv("BUPOSE_OPS", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ops.warn_if_reference("m_add", "cpu") is False  # the compiled cpp one is used: silent
    with pytest.warns(RuntimeWarning, match="m_add on cuda: using the slow pure-PyTorch reference") as rec:
        assert ops.warn_if_reference("m_add", "cuda") is True
    text = str(rec[0].message)
    assert "cuda: extension failed to build: no compiler" in text and "--no-build-isolation" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ops.warn_if_reference("m_add", "cuda") is True  # once per process
        monkeypatch.setenv("BUPOSE_OPS", "reference")
        ops.clear_op_cache()
        assert ops.warn_if_reference("m_add", "cpu") is True  # chosen on purpose: no notice
        assert ops.warn_if_reference("not_an_op", "cpu") is False
