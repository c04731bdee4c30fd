"""Fault injection with real processes and real signals (scenarios in ``bench/faults.py``).

Sizes are small for CI; the full runs (300 clients in 25 rooms) are ``bench/faults.py`` flags, with their
figures in docs/RELIABILITY.md. Override here with ``VIOP_TEST_FAULT_ROOMS``, ``VIOP_TEST_FAULT_SEATED`` and
``VIOP_TEST_FAULT_WAITING``.
"""

from __future__ import annotations

import json
import os

import pytest

from bench.fault_world import Shape
from bench.harness import raise_fd_limit


@pytest.fixture(scope="session")
def shape() -> Shape:
    raise_fd_limit()
    return Shape(
        rooms=int(os.environ.get("VIOP_TEST_FAULT_ROOMS", "2")),
        seated=int(os.environ.get("VIOP_TEST_FAULT_SEATED", "3")),
        waiting=int(os.environ.get("VIOP_TEST_FAULT_WAITING", "2")),
    )


def report(figures: dict[str, object]) -> None:
    """Print the run's figures (pytest shows them with -s, and on failure)."""
    shown = {k: v for k, v in figures.items() if k not in ("presence_before", "presence_after")}
    print(json.dumps(shown, indent=1, default=str))
