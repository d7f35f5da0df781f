"""bupose-logocap stands on core (+ a backbone) alone: no module of the package imports bupose.dekr."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "bupose" / "logocap"
PKG = Path(__file__).parents[1]


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_dekr_import_anywhere_in_the_package() -> None:
    files = [*SRC.rglob("*.py"), *(PKG / "tests").rglob("*.py"), *(PKG / "bench").rglob("*.py")]
    assert len(files) > 5
    offenders = {str(f): n for f in files for n in _imports(f) if n == "bupose.dekr" or n.startswith("bupose.dekr.")}
    assert offenders == {}
    text = "\n".join(f.read_text() for f in SRC.rglob("*.py"))
    assert "bupose.dekr" not in text and "import_module(\"bupose.dekr" not in text


def test_importing_every_module_does_not_load_dekr() -> None:
    mods = sorted(
        "bupose.logocap." + p.stem for p in SRC.glob("*.py") if p.stem != "__init__"
    )
    code = (
        "import sys, importlib\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m.startswith('bupose.dekr')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
