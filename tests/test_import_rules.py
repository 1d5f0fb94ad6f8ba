"""Imports between the apps run one way: frontend -> notifications -> orders.

``orders`` (the domain) imports nothing from ``notifications`` or
``frontend``; ``notifications`` imports nothing from ``frontend``. Checked on
the syntax tree of every ``.py`` file under each app, its tests and
migrations included: the domain's tests may use the shared harness
(``tests/support``), which lives outside the app and is not checked here,
but not the transports. Imports inside functions count, and so do dynamic
imports of a literal name (``importlib.import_module``, ``__import__``).
Project-level modules (``booktime``) may be imported from anywhere.

And nothing imports from a ``conftest.py``: pytest loads those itself (as
other modules than an import would make), and what tests share lives in
``tests/support``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# app -> the apps it must not import from
FORBIDDEN = {
    "orders": ("notifications", "frontend"),
    "notifications": ("frontend",),
}

DYNAMIC_IMPORTS = {"import_module", "__import__"}


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            # Relative imports (level > 0) stay inside the app's own package.
            if node.level == 0 and node.module:
                yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                name in DYNAMIC_IMPORTS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield node.lineno, first.value


def violations(app: str) -> tuple[int, list[str]]:
    """(files checked, ``file:line: imports module`` for each forbidden import)."""
    found = []
    files = sorted((ROOT / app).rglob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in imported_modules(tree):
            if module.split(".")[0] in FORBIDDEN[app]:
                found.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return len(files), found


@pytest.mark.parametrize("app", FORBIDDEN)
def test_an_app_imports_nothing_from_the_apps_that_build_on_it(app: str) -> None:
    checked, found = violations(app)
    assert checked > 10, f"found only {checked} files under {app}/"
    assert not found, (
        f"{app} must not import from {', '.join(FORBIDDEN[app])} "
        "(imports run frontend -> notifications -> orders):\n" + "\n".join(found)
    )


def test_nothing_imports_from_a_conftest() -> None:
    files = [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if not {".venv", "node_modules"} & set(path.relative_to(ROOT).parts)
    ]
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in files
        for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if module.split(".")[-1] == "conftest"
    ]
    assert len(files) > 100
    assert not found, "move what tests share to tests/support:\n" + "\n".join(found)


def test_the_check_sees_every_form_of_import() -> None:
    source = """
import notifications
import os, frontend.views as fv
from notifications.streams import authorize
from . import models
from .api import views

def later():
    from notifications import log
    importlib.import_module("frontend.urls")
    __import__("notifications.publish")
"""
    assert [module for _, module in imported_modules(ast.parse(source))] == [
        "notifications",
        "os",
        "frontend.views",
        "notifications.streams",
        "notifications",
        "frontend.urls",
        "notifications.publish",
    ]
