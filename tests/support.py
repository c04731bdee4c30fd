"""Test support shared by the suite: a real uvicorn server on a free loopback port.

The code lives in ``bench/scenarios/live_server.py`` so benchmarks can use it without importing ``tests/``.
"""

from __future__ import annotations

from bench.scenarios.live_server import LiveServer, free_port, run_live_server, test_settings

__all__ = ["LiveServer", "free_port", "run_live_server", "test_settings"]
