"""``tests/`` may import ``bench/``, never the reverse: shared scenario code lives in ``bench/scenarios/``."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_benchmark_imports_the_test_suite() -> None:
    scripts = sorted(BENCH.rglob("*.py"))
    assert len(scripts) > 10  # the scan sees the benchmarks
    offenders = {
        str(path.relative_to(BENCH)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "tests")
        for path in scripts
    }
    assert {p: m for p, m in offenders.items() if m} == {}
