"""docs/HIPAA.md's safeguard map names the code and the test behind every safeguard: each name must exist.

A refactor that moves a function or renames a test breaks the map silently otherwise; this test turns
that into a failure naming the stale reference.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAP = ROOT / "docs" / "HIPAA.md"
# `path/to/file.py`, `path/to/file.py:Name.attr` or `tests/x.py::test_name`, inside backticks
REFERENCE = re.compile(r"`((?:vIOP|tests|docker-compose)[\w/.-]*?(?:\.py|\.yml)?)(?:(::?)([\w.]+))?`")


def _table_rows() -> list[str]:
    text = MAP.read_text(encoding="utf-8")
    start = text.index("## Safeguard map")
    end = text.index("\n## ", start + 1)
    return [line for line in text[start:end].splitlines() if line.startswith("| ") and "---" not in line]


def _defined_names(path: Path) -> set[str]:
    """Dotted names defined at module level and one level into classes (``Class.method``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        names.add(f"{node.name}.{item.name}")
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        names.add(f"{node.name}.{item.target.id}")
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def references() -> list[tuple[str, str, str]]:
    found = []
    for row in _table_rows():
        for path, sep, name in REFERENCE.findall(row):
            found.append((path, sep, name))
    return found


def test_the_map_has_a_row_per_technical_safeguard() -> None:
    rows = "\n".join(_table_rows())
    for safeguard in ("(a)(1)", "(a)(2)(i)", "(a)(2)(ii)", "(a)(2)(iii)", "(a)(2)(iv)", "(b)", "(c)(1)",
                      "(c)(2)", "(d)", "(e)(1)", "(e)(2)(i)", "(e)(2)(ii)", "2.31", "2.32", "2.16"):  # fmt: skip
        assert safeguard in rows, safeguard
    assert len(references()) > 40


def test_every_code_and_test_reference_in_the_map_exists() -> None:
    stale = []
    for path, sep, name in references():
        file = ROOT / path
        if not file.exists():
            stale.append(f"{path}: no such file")
            continue
        if file.is_dir() or not name or file.suffix != ".py":
            continue
        if name not in _defined_names(file):
            stale.append(f"{path}{sep}{name}: not defined there")
    assert stale == []
