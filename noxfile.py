"""nox sessions for the bupose monorepo.

    nox                       lint + tests(<every package>) + integration   (the README's test command)
    nox -s "tests(bupose-hrnet)"   one package alone: core + that package + its declared bupose deps
    nox -s integration        everything installed together, the example plugin, CLI end to end
    nox -s demo               the README's main job (synthetic data -> train -> evaluate -> overlays)
    nox -s gpu                CUDA tests and GPU benchmarks (not run by default; needs a GPU)
    nox -s grouppose_synth    GroupPose trained on synthetic scenes (slow; not run by default)
    nox -s centergroup_synth  CenterGroup stages 1 + 2 trained on synthetic scenes (slow; not run by default)

torch: where this machine offers a local torch wheel (pip's ``find-links``, ``PIP_FIND_LINKS`` or
``BUPOSE_TORCH_WHEELS``), every session installs exactly that wheel and pins torch to it, so no
resolver ever pulls a multi-GB CUDA build. Elsewhere torch resolves normally.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import nox
import tomllib

ROOT = Path(__file__).resolve().parent
PACKAGES_DIR = ROOT / "packages"
EXAMPLES = [ROOT / "examples" / "bupose-example-head"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests", "integration"]
nox.options.error_on_missing_interpreters = False

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
TEST_REQUIREMENTS = ["pytest>=8", "hypothesis>=6"]
BUILD_REQUIREMENTS = ["setuptools>=69", "wheel", "ninja", "pybind11>=2.10"]


def _pyproject(path: Path) -> dict:
    with open(path / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _packages() -> dict[str, Path]:
    found = {}
    for p in sorted(PACKAGES_DIR.iterdir()):
        if (p / "pyproject.toml").is_file():
            found[_pyproject(p)["project"]["name"]] = p
    return found


PACKAGES = _packages()


def _bupose_requirements(name: str, extras: tuple[str, ...] = ("test",)) -> list[str]:
    """bupose-* distributions a package declares (dependencies + the given extras), transitively."""
    seen: list[str] = []
    todo = [name]
    while todo:
        current = todo.pop()
        project = _pyproject(PACKAGES[current])["project"]
        reqs = list(project.get("dependencies", []))
        for extra in extras:
            reqs += project.get("optional-dependencies", {}).get(extra, [])
        for req in reqs:
            dep = re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0]
            if dep.startswith("bupose-") and dep not in seen and dep != name:
                if dep not in PACKAGES:
                    raise RuntimeError(f"{current} requires {dep}, which is not under packages/")
                seen.append(dep)
                todo.append(dep)
    return seen


@functools.cache
def _local_torch_wheel() -> Path | None:
    """A torch wheel for this interpreter in a local wheel folder, if the machine provides one."""
    dirs: list[str] = []
    for var in ("BUPOSE_TORCH_WHEELS", "PIP_FIND_LINKS"):
        dirs += os.environ.get(var, "").split()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
        ).stdout
        for line in out.splitlines():
            if "find-links" in line:
                dirs += line.split("=", 1)[1].strip().strip("'\"").split()
    except (OSError, subprocess.SubprocessError):
        pass
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for d in dirs:
        d = d.removeprefix("file://")
        if not os.path.isdir(d):
            continue
        wheels = sorted(Path(d).glob(f"torch-*-{tag}-{tag}-*.whl"))
        if wheels:
            return wheels[-1]
    return None


def _install(session: nox.Session, *args: str) -> None:
    """Install with torch pinned to the local wheel when there is one."""
    wheel = _local_torch_wheel()
    extra: list[str] = []
    if wheel is not None:
        version = wheel.name.split("-")[1]
        constraints = Path(session.create_tmp()) / "torch-constraint.txt"
        constraints.write_text(f"torch=={version}\n")
        extra = ["--find-links", str(wheel.parent), "-c", str(constraints)]
    session.install(*extra, *args)


def _install_torch(session: nox.Session) -> None:
    wheel = _local_torch_wheel()
    _install(session, str(wheel) if wheel is not None else "torch")


def _install_packages(session: nox.Session, names: list[str], *, examples: bool = False) -> None:
    """Install local packages (non-editable, as a user would) in one resolver call."""
    _install_torch(session)
    _install(session, *BUILD_REQUIREMENTS, *TEST_REQUIREMENTS)
    paths = [str(PACKAGES[n]) for n in names]
    if examples:
        paths += [str(p) for p in EXAMPLES]
    # --no-build-isolation: bupose-cuda-ops builds its C++ extension against the installed torch.
    _install(session, "--no-build-isolation", *paths)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over every package, the examples, the integration tests and this file."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "packages", "examples", "integration_tests", "noxfile.py", "tools")


@nox.session(python=PYTHON)
@nox.parametrize("package", [nox.param(name, id=name) for name in PACKAGES])
def tests(session: nox.Session, package: str) -> None:
    """One package's tests with only core, that package and its declared bupose deps installed."""
    names = ["bupose-core", *[d for d in _bupose_requirements(package) if d != "bupose-core"]]
    if package not in names:
        names.append(package)
    _install_packages(session, names)
    env = {"BUPOSE_ISOLATED_PACKAGES": ",".join(sorted(set(names)))}
    session.run("pytest", str(PACKAGES[package] / "tests"), "-q", *session.posargs, env=env)


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """Everything together: backbone x head combinations, CLI end to end, the example plugin."""
    _install_packages(session, list(PACKAGES), examples=True)
    # bupose-core[export] (ONNX export checked in onnxruntime) and [supervision] (Poses interop)
    _install(session, "onnx>=1.16", "onnxruntime>=1.18", "supervision>=0.26", "pillow>=10")  # pillow: CMYK JPEG corpus case
    for example in EXAMPLES:
        session.run("pytest", str(example / "tests"), "-q")
    session.run("pytest", "integration_tests", "-q", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job on the embedded default: synthetic scenes -> train DEKR -> evaluate -> overlays.

    Fails (non-zero exit) when the validation AP misses the demo's goal or the training hit its time limit.
    """
    _install_packages(session, ["bupose-core", "bupose-cuda-ops", "bupose-hrnet", "bupose-dekr"])
    out = session.posargs[0] if session.posargs else str(ROOT / "demo-output")
    session.run("bupose", "demo", "--out", out)


@nox.session(python=PYTHON, default=False)
def logocap_synth(session: nox.Session) -> None:
    """LOGO-CAP trained on synthetic scenes on the CPU, AP on held-out scenes (minutes; not CI)."""
    _install_packages(session, ["bupose-core", "bupose-hrnet", "bupose-logocap"])
    out = session.posargs[0] if session.posargs else str(ROOT / "logocap-synth-output")
    session.run("python", str(PACKAGES["bupose-logocap"] / "bench" / "train_synth.py"), out, *session.posargs[1:])


@nox.session(python=PYTHON, default=False)
def grouppose_synth(session: nox.Session) -> None:
    """GroupPose (resnet18, reduced transformer) trained on synthetic scenes on the CPU, AP on held-out
    scenes (long: DETR-style training converges slowly; not CI)."""
    _install_packages(session, ["bupose-core", "bupose-resnet", "bupose-grouppose"])
    out = session.posargs[0] if session.posargs else str(ROOT / "grouppose-synth-output")
    session.run("python", str(PACKAGES["bupose-grouppose"] / "bench" / "train_synth.py"), out, *session.posargs[1:])


@nox.session(python=PYTHON, default=False)
def centergroup_synth(session: nox.Session) -> None:
    """CenterGroup stage 1 + stage 2 trained on synthetic scenes on the CPU, AP on held-out scenes (slow; not CI)."""
    _install_packages(session, ["bupose-core", "bupose-hrnet", "bupose-centergroup"])
    out = session.posargs[0] if session.posargs else str(ROOT / "centergroup-synth-output")
    session.run(
        "python", str(PACKAGES["bupose-centergroup"] / "bench" / "train_synth.py"), out, *session.posargs[1:]
    )


@nox.session(python=PYTHON, default=False)
def gpu(session: nox.Session) -> None:
    """CUDA tests and GPU benchmarks (needs a CUDA torch and a GPU; never part of CI)."""
    _install_packages(session, list(PACKAGES))
    session.run("python", "-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')")
    session.run("pytest", "-m", "gpu", *[str(p / "tests") for p in PACKAGES.values()], "-q")
