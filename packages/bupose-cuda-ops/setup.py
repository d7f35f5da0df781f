"""Build the C++ (CPU) and, when possible, CUDA extensions of bupose-cuda-ops.

Never fails the install because of the kernels: each extension that cannot be built is skipped,
and why is recorded in ``bupose/cuda_ops/_build_status.json`` next to the extensions, where the
ops' availability checks (and so ``bupose info``) read it.

Environment: ``BUPOSE_OPS_NO_CUDA=1`` skips the CUDA extension, ``BUPOSE_OPS_NO_BUILD=1`` skips
both; ``MAX_JOBS`` defaults to 2.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _setuptools_build_ext

os.environ.setdefault("MAX_JOBS", "2")

CSRC = "src/bupose/cuda_ops/csrc"
STATUS_FILE = "_build_status.json"
PACKAGE = "bupose.cuda_ops"
CPU_EXT = f"{PACKAGE}._C"
CUDA_EXT = f"{PACKAGE}._C_cuda"

_skipped: dict[str, str] = {}
_ext_modules: list[Extension] = []
_base_build_ext: type = _setuptools_build_ext

if os.environ.get("BUPOSE_OPS_NO_BUILD", "").strip() not in ("", "0"):
    _skipped[CPU_EXT] = _skipped[CUDA_EXT] = "not built: BUPOSE_OPS_NO_BUILD was set at install time"
else:
    try:
        import torch
        from torch.utils import cpp_extension
    except Exception as exc:  # noqa: BLE001 - any failure means "no torch to build against"
        reason = (
            f"not built: torch was not importable at build time ({type(exc).__name__}: {exc}); "
            "reinstall with `pip install --no-build-isolation` into an environment that has torch"
        )
        _skipped[CPU_EXT] = _skipped[CUDA_EXT] = reason
    else:
        _base_build_ext = cpp_extension.BuildExtension.with_options(
            use_ninja=shutil.which("ninja") is not None
        )
        _ext_modules.append(
            cpp_extension.CppExtension(
                CPU_EXT,
                [f"{CSRC}/cpu_ops.cpp"],
                extra_compile_args={"cxx": ["-O3"]},
            )
        )
        nvcc = shutil.which("nvcc") or (
            os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc") if cpp_extension.CUDA_HOME else None
        )
        if os.environ.get("BUPOSE_OPS_NO_CUDA", "").strip() not in ("", "0"):
            _skipped[CUDA_EXT] = "not built: BUPOSE_OPS_NO_CUDA was set at install time"
        elif torch.version.cuda is None:
            _skipped[CUDA_EXT] = f"not built: torch {torch.__version__} has no CUDA support"
        elif nvcc is None or not os.path.exists(nvcc):
            _skipped[CUDA_EXT] = "not built: no CUDA toolkit (nvcc) found at install time"
        else:
            _ext_modules.append(
                cpp_extension.CUDAExtension(
                    CUDA_EXT,
                    [f"{CSRC}/cuda_binding.cpp", f"{CSRC}/cuda_kernels.cu"],
                    extra_compile_args={"cxx": ["-O2"], "nvcc": ["-O2"]},
                )
            )


class SafeBuildExt(_base_build_ext):  # type: ignore[misc, valid-type]
    """build_ext that records each extension's outcome and never fails the install."""

    def run(self) -> None:
        self._bupose_inplace = bool(self.inplace)
        self._bupose_status = {
            name.rsplit(".", 1)[-1]: {"built": False, "reason": reason} for name, reason in _skipped.items()
        }
        if _build_nothing:
            self._write_status()
            return
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001
            for ext in self.extensions:
                self._bupose_status.setdefault(
                    ext.name.rsplit(".", 1)[-1],
                    {"built": False, "reason": f"build failed: {type(exc).__name__}: {exc}"},
                )
        finally:
            self._write_status()

    def build_extension(self, ext: Extension) -> None:
        short = ext.name.rsplit(".", 1)[-1]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - a failed kernel build must not fail the install
            tail = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
            reason = f"build failed: {tail[-1] if tail else type(exc).__name__}"
            self.warn(f"bupose-cuda-ops: {ext.name} {reason}; the pure-PyTorch ops will be used")
            self._bupose_status[short] = {"built": False, "reason": reason[:2000]}
        else:
            self._bupose_status[short] = {"built": True, "reason": ""}

    def _status_path(self) -> Path:
        return Path(self.get_ext_fullpath(CPU_EXT)).parent / STATUS_FILE

    def _write_status(self) -> None:
        paths = {self._status_path()}
        if getattr(self, "_bupose_inplace", False):
            # setuptools builds in build_lib and copies to the source tree only on success.
            package_dir = self.get_finalized_command("build_py").get_package_dir(PACKAGE)
            paths.add(Path(package_dir) / STATUS_FILE)
        text = json.dumps(self._bupose_status, indent=2, sort_keys=True) + "\n"
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        message = missing_cpu_warning(self._bupose_status)
        if message is not None:
            # pip shows a build's output only with -v; the same text reaches users at run time
            # (bupose info, and the pipelines' one-time notice when the reference op runs).
            line = "=" * 78
            print(f"\n{line}\n{message}\n{line}\n", file=sys.stderr, flush=True)

    def get_outputs(self) -> list[str]:
        built = [] if _build_nothing else super().get_outputs()
        status = getattr(self, "_bupose_status", {})
        failed = {
            self.get_ext_fullpath(ext.name)
            for ext in self.extensions
            if not status.get(ext.name.rsplit(".", 1)[-1], {}).get("built", True)
        }
        return [*(o for o in built if o not in failed), str(self._status_path())]


FIX = (
    "to get them, reinstall into an environment that already has torch, without build isolation: "
    "`pip install --no-build-isolation --force-reinstall --no-deps bupose-cuda-ops` (or `-e "
    "packages/bupose-cuda-ops` in a checkout); `bupose info` shows what is in use"
)


def missing_cpu_warning(status: dict[str, dict[str, object]]) -> str | None:
    """The install-time warning when the C++ (CPU) extension was not built, else None."""
    record = status.get("_C", {})
    if record.get("built"):
        return None
    reason = str(record.get("reason") or "not built")
    return (
        "WARNING: bupose-cuda-ops installed WITHOUT its compiled C++ kernels "
        f"({reason}); deformable convolution and attention will run the slow pure-PyTorch reference "
        f"(several times slower). {FIX}"
    )


_build_nothing = not _ext_modules
if _build_nothing:
    # A placeholder so that build_ext still runs and records why nothing was built.
    _ext_modules.append(Extension(CPU_EXT, sources=[]))

setup(ext_modules=_ext_modules, cmdclass={"build_ext": SafeBuildExt})
