"""Who may import whom: the layering rules of docs/architecture.md, checked on the source tree.

- core imports no plugin package (``bupose.<anything but core>``);
- only ``bupose.core.cli`` itself, core's command-registering built-ins and ``__main__`` modules import
  the CLI; library code never does;
- the modules of core import each other without cycles (every import counts, lazy ones inside
  functions too: a lazy import hides a cycle, it does not remove it);
- a plugin package imports core and itself only: heads and backbones meet through the registry.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CORE_SRC = REPO / "packages" / "bupose-core" / "src"


def _module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, src: Path) -> Iterator[tuple[str, int]]:
    """Absolute names of every module ``path`` imports (type-checking-only imports excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path, src)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    type_checking: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in ast.walk(node):
                type_checking.add(id(sub))
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # `from . import cli` imports a module
                yield f"{target}.{alias.name}", node.lineno


def _sources(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)


def _core_modules() -> dict[str, Path]:
    return {_module_name(p, CORE_SRC): p for p in _sources(CORE_SRC)}


def test_core_imports_no_plugin_package() -> None:
    bad = [
        f"{path.relative_to(REPO)}:{line}: imports {name}"
        for path in _sources(CORE_SRC)
        for name, line in _imports(path, CORE_SRC)
        if name.startswith("bupose.") and not (name == "bupose.core" or name.startswith("bupose.core."))
    ]
    assert not bad, "core must not import plugin packages:\n" + "\n".join(bad)


def _allowed_cli_importer(module: str) -> bool:
    return (
        module == "bupose.core.cli"
        or module.startswith(("bupose.core.cli.", "bupose.core.builtins."))
        or module.endswith("__main__")
    )


def test_only_the_cli_imports_the_cli() -> None:
    bad = []
    for module, path in _core_modules().items():
        if _allowed_cli_importer(module):
            continue
        for name, line in _imports(path, CORE_SRC):
            if name == "bupose.core.cli" or name.startswith("bupose.core.cli."):
                bad.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    assert not bad, "library modules must not import the CLI:\n" + "\n".join(bad)


def _core_graph() -> dict[str, set[str]]:
    modules = _core_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name, _line in _imports(path, CORE_SRC):
            # `from .x import y` yields both x and x.y: keep the longest name that is a module
            if name in modules and name != module:
                graph[module].add(name)
    # a package's __init__ importing its own submodules is not a dependency between layers
    for module in graph:
        graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _package_of(module: str) -> str:
    """The sub-package a core module belongs to (``bupose.core.eval._engine`` -> ``bupose.core.eval``)."""
    parts = module.split(".")
    return ".".join(parts[:3])


def test_core_packages_have_no_import_cycles() -> None:
    graph = _core_graph()
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        src = _package_of(module)
        packages.setdefault(src, set())
        for t in targets:
            dst = _package_of(t)
            if dst != src and dst != "bupose.core":
                packages[src].add(dst)
            packages.setdefault(dst, set())
    cycle = _find_cycle(packages)
    assert cycle is None, "import cycle between core sub-packages: " + " -> ".join(cycle)


def test_core_modules_have_no_import_cycles() -> None:
    cycle = _find_cycle(_core_graph())
    assert cycle is None, "import cycle between core modules: " + " -> ".join(cycle)


def _plugin_packages() -> list[tuple[str, Path]]:
    out = []
    for pkg in sorted((REPO / "packages").iterdir()):
        src = pkg / "src" / "bupose"
        if pkg.name == "bupose-core" or not src.is_dir():
            continue
        for sub in sorted(src.iterdir()):
            if sub.is_dir() and (sub / "__init__.py").is_file():
                out.append((f"bupose.{sub.name}", pkg / "src"))
    return out


@pytest.mark.parametrize(("package", "src"), _plugin_packages(), ids=[p for p, _ in _plugin_packages()])
def test_plugin_packages_import_only_core_and_themselves(package: str, src: Path) -> None:
    root = src / Path(*package.split("."))
    bad = [
        f"{path.relative_to(REPO)}:{line}: imports {name}"
        for path in _sources(root)
        for name, line in _imports(path, src)
        if name.startswith("bupose.")
        and not name.startswith(("bupose.core", package))
        and name != package
    ]
    assert not bad, f"{package} may import only bupose.core and itself:\n" + "\n".join(bad)


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    src = tmp_path / "src"
    mod = src / "bupose" / "core" / "engine"
    mod.mkdir(parents=True)
    (mod / "x.py").write_text("def f():\n    from ..cli import BuposeError\n    import bupose.dekr\n")
    names = {n for n, _ in _imports(mod / "x.py", src)}
    assert "bupose.core.cli" in names and "bupose.dekr" in names
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
