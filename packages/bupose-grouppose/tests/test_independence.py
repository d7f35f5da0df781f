"""bupose-grouppose stands on core (+ its declared backbones for the tests) alone: no module imports
another method package, and the plugin module imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "bupose" / "grouppose"
PKG = Path(__file__).parents[1]
OTHERS = ("bupose.dekr", "bupose.logocap", "bupose.simplepose", "bupose.hrnet", "bupose.resnet", "bupose.swin",
          "bupose.cuda_ops")  # fmt: skip


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_other_bupose_package_is_imported() -> None:
    files = [*SRC.rglob("*.py"), *(PKG / "tests").rglob("*.py"), *(PKG / "bench").rglob("*.py")]
    assert len(files) > 10
    offenders = {str(f): n for f in files for n in _imports(f) if n.startswith(OTHERS)}
    assert offenders == {}


def test_plugin_and_options_import_no_torch() -> None:
    code = (
        "import sys\n"
        "import bupose.grouppose.plugin, bupose.grouppose.options\n"
        "bad = [m for m in ('torch', 'numpy', 'scipy', 'PIL') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
