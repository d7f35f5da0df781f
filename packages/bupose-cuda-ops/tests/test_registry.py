"""Registration, op lookup, availability reasons and `bupose info`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from bupose.core.ops import clear_op_cache, get_op, op_choices, selected_implementation
from bupose.core.ops import reference as ref
from bupose.cuda_ops import availability, functions


@pytest.fixture
def fresh(fresh_bupose_registry):
    return fresh_bupose_registry


def test_cpp_extension_is_built_and_loads():
    ok, reason = availability.cpp_available()
    assert ok, f"the C++ extension should have been built at install time: {reason}"
    module = availability.load_extension("cpp")
    assert hasattr(module, "dcn_im2col") and hasattr(module, "msda_backward")


@pytest.mark.parametrize("op", ["deform_conv2d", "ms_deform_attn"])
def test_registered_with_priorities(fresh, op):
    specs = {c.spec.implementation: c.spec for c in op_choices(op)}
    assert specs["cpp"].priority == 10 and specs["cpp"].devices == ("cpu",)
    assert specs["cuda"].priority == 20 and specs["cuda"].devices == ("cuda",)
    assert specs["reference"].priority == 0
    assert specs["cpp"].distribution == "bupose-cuda-ops"
    assert [c.spec.implementation for c in op_choices(op)] == ["cuda", "cpp", "reference"]


@pytest.mark.parametrize("op", ["deform_conv2d", "ms_deform_attn"])
def test_lookup_picks_cpp_on_cpu_and_reference_when_forced(fresh, monkeypatch, op):
    monkeypatch.delenv("BUPOSE_OPS", raising=False)
    clear_op_cache()
    assert selected_implementation(op, "cpu") == "cpp"
    assert get_op(op, torch.device("cpu")) is getattr(functions, f"{op}_cpp")
    monkeypatch.setenv("BUPOSE_OPS", "reference")
    assert selected_implementation(op, "cpu") == "reference"
    assert get_op(op, "cpu") is getattr(ref, op)
    assert get_op(op, "cuda:0") is getattr(ref, op)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without a GPU")
def test_cuda_falls_back_with_a_reason_without_gpu(fresh, monkeypatch):
    monkeypatch.delenv("BUPOSE_OPS", raising=False)
    clear_op_cache()
    assert selected_implementation("deform_conv2d", "cuda") == "reference"
    choice = next(c for c in op_choices("deform_conv2d") if c.spec.implementation == "cuda")
    assert not choice.available
    assert choice.reason  # e.g. "not built: torch ... has no CUDA support" or "no CUDA device"


@pytest.mark.gpu
def test_lookup_picks_cuda_on_gpu(fresh, monkeypatch):
    monkeypatch.delenv("BUPOSE_OPS", raising=False)
    clear_op_cache()
    assert selected_implementation("deform_conv2d", "cuda") == "cuda"
    assert selected_implementation("ms_deform_attn", "cuda") == "cuda"


def test_bupose_info_shows_implementations_and_reasons(fresh, monkeypatch):
    from bupose.core.cli import build_cli

    monkeypatch.delenv("BUPOSE_OPS", raising=False)
    clear_op_cache()
    result = CliRunner().invoke(build_cli(), ["info", "--json"])
    assert result.exit_code == 0, result.output
    ops = json.loads(result.output)["ops"]
    for op in ("deform_conv2d", "ms_deform_attn"):
        assert ops[op]["in_use"]["cpu"] == "cpp"
        impls = {i["implementation"]: i for i in ops[op]["implementations"]}
        assert impls["cpp"]["available"] is True
        if not torch.cuda.is_available():
            assert impls["cuda"]["available"] is False and impls["cuda"]["reason"]
    text = CliRunner().invoke(build_cli(), ["info"]).output
    assert "deform_conv2d: cpu -> cpp" in text


def test_failed_extension_import_falls_back_to_reference():
    """A broken extension (import fails) leaves the package usable: cpu -> reference, with the reason."""
    code = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "bupose.cuda_ops._C":
            raise ImportError("simulated: undefined symbol _ZN2at6Tensor")
        return None
sys.meta_path.insert(0, Block())
from bupose.core.ops import get_op, op_status, selected_implementation
from bupose.core.ops import reference
assert selected_implementation("deform_conv2d", "cpu") == "reference"
assert get_op("ms_deform_attn", "cpu") is reference.ms_deform_attn
cpp = [i for i in op_status()["deform_conv2d"] if i["implementation"] == "cpp"][0]
assert not cpp["available"]
print(cpp["reason"])
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "BUPOSE_OPS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "simulated: undefined symbol" in proc.stdout
    assert "does not load" in proc.stdout


def test_build_status_and_explanations(tmp_path):
    status = tmp_path / "_build_status.json"
    assert availability.build_status(status) == {}
    status.write_text(json.dumps({"_C": {"built": False, "reason": "build failed: CompileError: boom"}}))
    record = availability.build_status(status)
    exc = ImportError("No module named 'bupose.cuda_ops._C'")
    assert availability.explain_failure("_C", exc, record) == "build failed: CompileError: boom"
    assert "was not built" in availability.explain_failure("_C_cuda", exc, record)
    assert "never built" in availability.explain_failure("_C", exc, {})
    assert "does not load" in availability.explain_failure("_C", exc, {"_C": {"built": True, "reason": ""}})
    status.write_text("{not json")
    assert "unreadable build record" in availability.build_status(status)["_error"]["reason"]


def test_unavailable_extension_raises_a_clear_error(monkeypatch):
    monkeypatch.setitem(availability.EXTENSIONS, "cpp", "_C_does_not_exist")
    availability._probe.cache_clear()
    try:
        with pytest.raises(availability.ExtensionUnavailableError, match="cpp kernels are unavailable"):
            availability.load_extension("cpp")
        ok, reason = availability.cpp_available()
        assert not ok and "_C_does_not_exist" in reason
    finally:
        availability._probe.cache_clear()
