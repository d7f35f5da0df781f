"""bupose-centergroup stands on core (+ a backbone through the registry) alone: no module of the
package imports another method package or a backbone package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "bupose" / "centergroup"
PKG = Path(__file__).parents[1]
OTHERS = ("bupose.dekr", "bupose.logocap", "bupose.simplepose", "bupose.grouppose", "bupose.hrnet", "bupose.resnet", "bupose.swin")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_other_package_import() -> None:
    files = [*SRC.rglob("*.py"), *(PKG / "tests").rglob("*.py"), *(PKG / "bench").rglob("*.py")]
    assert len(files) > 10
    offenders = {str(f): n for f in files for n in _imports(f) if n.startswith(OTHERS)}
    assert offenders == {}


def test_importing_every_module_loads_no_other_package() -> None:
    mods = sorted("bupose.centergroup." + p.stem for p in SRC.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys, importlib\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"bad = [m for m in sys.modules if m.startswith({OTHERS!r})]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
