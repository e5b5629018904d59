"""The tree shows the architecture: every module imports only its own layer and the layers
below it, and no two modules import each other, directly or around a circle.

Imports are read with ``ast`` from the sources, at any depth (inside functions too), except
those under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "kmem"

# Bottom up, each layer a tuple of module or package names. Layer 0 is what every layer may
# use: the errors, and the choice of core (kmem._compiled, which loads the C extension
# kmem._core). kmem/__init__.py (the re-export point) and kmem/__main__.py sit above them all.
LAYERS = [("kmem.errors", "kmem._compiled", "kmem._core"), ("kmem.page",), ("kmem.slab",),
          ("kmem.arena",),
          ("kmem.trace",), ("kmem.show",), ("kmem.cli",)]
TOP = {"kmem", "kmem.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, imported module) of every kmem import that can run."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.startswith("kmem"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
            node.module == "kmem" or node.module.startswith("kmem.")
        ):
            for alias in node.names:
                # `from kmem.slab import flags` imports the module kmem.slab.flags
                candidate = f"{node.module}.{alias.name}"
                module_file = SRC / (candidate.replace(".", "/") + ".py")
                package_dir = SRC / candidate.replace(".", "/")
                is_module = module_file.exists() or (package_dir / "__init__.py").exists()
                found.append((node.lineno, candidate if is_module else node.module))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@functools.cache  # parsed once: test_no_import_circles asks for it once per import
def _graph() -> dict[str, list[tuple[int, str]]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[_module_name(path)] = _runtime_imports(ast.parse(path.read_text()))
    return graph


def _layer(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return index
    return len(LAYERS)  # the top: kmem itself, kmem.__main__


def test_every_module_belongs_to_a_layer() -> None:
    strays = [m for m in _graph() if _layer(m) == len(LAYERS) and m not in TOP]
    assert strays == [], f"modules outside every layer package: {strays}"


def test_at_most_a_handful_of_modules_lie_directly_in_kmem() -> None:
    direct = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert direct == ["__init__.py", "__main__.py", "_compiled.py", "errors.py"]


@pytest.mark.parametrize("module", sorted(_graph()))
def test_no_module_imports_a_higher_layer_or_kmem_itself(module: str) -> None:
    if module in TOP:
        return
    upward = [
        f"line {line}: {target}"
        for line, target in _graph()[module]
        if target == "kmem" or _layer(target) > _layer(module)
    ]
    assert upward == [], f"{module} imports upward: {upward}"


def test_no_import_circles() -> None:
    graph = {m: sorted({t for _, t in imports if t in _graph()}) for m, imports in _graph().items()}
    # A module's package __init__ runs before it, but the package docstrings import nothing,
    # so edges between modules are the whole graph.
    circles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in graph[module]:
            if state.get(target) == 1:
                circles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module)
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_layer_packages_open_with_a_docstring_saying_what_they_may_import() -> None:
    for (layer,) in LAYERS[1:]:
        init = SRC / layer.replace(".", "/") / "__init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and "May import" in docstring, f"{init} lacks its layer docstring"
