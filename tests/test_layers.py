"""The package's modules import downward only: no module imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import binance_pm

ROOT = Path(binance_pm.__file__).parent


def module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(ROOT.parent).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every package module ``path`` imports, anywhere in it (functions and TYPE_CHECKING too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known)
    found.discard(name)
    return found


def cycles() -> list[list[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(paths)
    graph = {name: imports(path, name, known) for name, path in paths.items()}
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


def test_no_module_of_the_package_imports_one_that_imports_it_back() -> None:
    assert cycles() == []


def test_the_command_line_uses_only_the_public_testing_api() -> None:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    private = {name for name in paths if name.startswith("binance_pm.testing._")}
    for name, path in paths.items():
        if name.startswith("binance_pm._cli"):
            assert not imports(path, name, set(paths)) & private, name


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in modules of their own (``served``, ``commands``, ``hostile`` …),
    so that a test module can change without breaking another."""
    tests = Path(__file__).parent
    modules = {p.stem for p in tests.glob("test_*.py")}
    offenders = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                name = node.module.rpartition(".")[2]
                if name in modules and name != path.stem:
                    offenders.append(f"{path.name} imports {node.module}")
    assert offenders == []
