"""``kmem`` is the one re-export point: every public name loads on first use, from the module
that defines it, and the typed import list that mypy reads names the same modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kmem

INIT = Path(kmem.__file__)


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse(INIT.read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If))
    found = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names:
            found[alias.name] = node.module
    return found


def test_every_exported_name_resolves_to_the_object_its_module_defines() -> None:
    import importlib

    for name, module in kmem._EXPORTS.items():
        assert getattr(kmem, name) is getattr(importlib.import_module(module), name), name


def test_the_typed_imports_and_the_lazy_table_agree() -> None:
    assert _type_checking_imports() == kmem._EXPORTS
    assert sorted(kmem.__all__) == sorted(kmem._EXPORTS)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        kmem.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("kmem.no_such_name did not raise")


def test_importing_kmem_loads_no_layer_until_a_name_is_used() -> None:
    code = ("import sys, kmem; print(sorted(m for m in sys.modules if m.startswith('kmem.')));"
            " kmem.BuddyAllocator; print('kmem.page.buddy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[]", "True"]


def test_the_command_line_help_loads_no_allocator_and_no_plotting() -> None:
    code = ("import sys; from kmem.cli.main import build_parser; build_parser(['--help'])\n"
            "print(sorted(m for m in sys.modules if m.startswith(('kmem.', 'matplotlib',"
            " 'rich'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['kmem.cli', 'kmem.cli.args', 'kmem.cli.main', 'kmem.errors']"
