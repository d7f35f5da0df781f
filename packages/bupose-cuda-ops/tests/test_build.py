"""Build checks: the CUDA sources compile with nvcc without torch headers, and a failed C++ build
still installs, recording why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CSRC = PACKAGE_ROOT / "src" / "bupose" / "cuda_ops" / "csrc"


def test_cuda_sources_do_not_include_torch():
    for name in ("cuda_kernels.cu", "cuda_kernels.h", "ops_math.h"):
        text = (CSRC / name).read_text()
        assert "#include <torch" not in text and "#include <ATen" not in text and "#include <c10" not in text


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_cuda_kernels_compile_with_nvcc(tmp_path):
    """nvcc -c of the plain CUDA C++ kernels (no torch, no GPU needed), so CUDA code cannot rot."""
    out = tmp_path / "cuda_kernels.o"
    cmd = ["nvcc", "-c", "-O2", "-std=c++17", f"-I{CSRC}", str(CSRC / "cuda_kernels.cu"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
    nm = shutil.which("nm")
    if nm is not None:
        symbols = subprocess.run([nm, "-C", str(out)], capture_output=True, text=True).stdout
        for launcher in ("dcn_im2col_cuda<float>", "dcn_coord_cuda<double>", "msda_backward_cuda<float>"):
            assert launcher in symbols


def test_failed_cpp_build_installs_and_records_the_reason(tmp_path):
    """A compiler that fails: build_ext exits 0 and _build_status.json says why."""
    src = tmp_path / "pkg"
    shutil.copytree(
        PACKAGE_ROOT,
        src,
        ignore=shutil.ignore_patterns("tests", "bench", "build", "*.so", "_build_status.json", "*.egg-info"),
    )
    fake = tmp_path / "fakecxx"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "g++ (GCC) 12.2.0"; exit 0; fi\necho "fake compiler: refusing" >&2; exit 1\n'
    )
    fake.chmod(0o755)
    env = dict(os.environ, CXX=str(fake), CC=str(fake), BUPOSE_OPS_NO_CUDA="1", MAX_JOBS="1")
    proc = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((src / "src" / "bupose" / "cuda_ops" / "_build_status.json").read_text())
    assert status["_C"]["built"] is False
    assert status["_C"]["reason"].startswith("build failed"), status
    assert status["_C_cuda"] == {
        "built": False,
        "reason": "not built: BUPOSE_OPS_NO_CUDA was set at install time",
    }
    assert not list((src / "src").rglob("_C*.so"))


def _copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "pkg"
    shutil.copytree(
        PACKAGE_ROOT,
        src,
        ignore=shutil.ignore_patterns("tests", "bench", "build", "*.so", "_build_status.json", "*.egg-info"),
    )
    return src


def test_install_without_torch_warns_with_the_fix(tmp_path):
    """An isolated build (no torch importable) installs, records why and prints the fix on stderr."""
    src = _copy_package(tmp_path)
    # sys.modules["torch"] = None makes `import torch` fail, as in pip's isolated build environment.
    script = (
        "import sys; sys.modules['torch'] = None; sys.argv = ['setup.py', '-q', 'build_ext', '--inplace']; "
        "exec(compile(open('setup.py').read(), 'setup.py', 'exec'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=src, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, BUPOSE_OPS_NO_CUDA="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((src / "src" / "bupose" / "cuda_ops" / "_build_status.json").read_text())
    assert status["_C"]["built"] is False and "torch was not importable" in status["_C"]["reason"]
    err = " ".join(proc.stderr.split())
    assert "WARNING: bupose-cuda-ops installed WITHOUT its compiled C++ kernels" in err
    assert "torch was not importable at build time" in err
    assert "pip install --no-build-isolation" in err


def test_missing_cpu_warning_text():
    # Only the function is needed: run its part of setup.py's source, not setup() itself.
    source = (PACKAGE_ROOT / "setup.py").read_text()
    namespace: dict = {}
    exec(source[source.index("FIX = (") : source.index("_build_nothing = not _ext_modules")], namespace)
    warn = namespace["missing_cpu_warning"]
    assert warn({"_C": {"built": True, "reason": ""}}) is None
    text = warn({"_C": {"built": False, "reason": "build failed: no compiler"}})
    assert "build failed: no compiler" in text and "--no-build-isolation" in text
    assert "not built" in warn({})
