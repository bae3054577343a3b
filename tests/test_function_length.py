"""No function in the package is longer than a screen: the bound docs/ARCHITECTURE.md states for readers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cutmix_zoo"
MAX_LINES = 60


def _functions() -> list[tuple[str, int]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1))
    return found


def test_no_function_is_over_sixty_lines():
    long = [f"{where} ({lines} lines)" for where, lines in _functions() if lines > MAX_LINES]
    assert not long, f"functions over {MAX_LINES} lines: {long}"


def test_the_count_sees_the_package():
    """The walk finds the package's functions, so an empty walk cannot pass the test above."""
    names = {where.split()[-1] for where, _ in _functions()}
    assert {"load", "main", "fetch_weights", "train_main"} <= names and len(names) > 200
