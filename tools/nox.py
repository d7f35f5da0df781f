#!/usr/bin/env python3
"""Run nox with nothing but python3: creates .nox-tools/ (a venv with nox and uv) once, then runs
``nox`` with the given arguments from the repository root.

    python3 tools/nox.py              # every test session (lint, per-package tests, integration)
    python3 tools/nox.py -s demo      # the demo: synthetic data -> train DEKR -> evaluate -> overlays
    python3 tools/nox.py -l           # list sessions
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".nox-tools"
REQUIREMENTS = ["nox>=2024.4", "uv>=0.4"]


def _python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def main() -> int:
    py = _python(TOOLS)
    marker = TOOLS / ".ready"
    if not marker.exists():
        print(f"[tools/nox.py] creating {TOOLS} with {', '.join(REQUIREMENTS)}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
            check=True,
        )
        marker.write_text("ok\n")
    env = dict(os.environ)
    env["PATH"] = f"{py.parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.call([str(py), "-m", "nox", *sys.argv[1:]], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
