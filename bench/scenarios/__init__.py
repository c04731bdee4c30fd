"""Scenario building blocks shared by benchmarks and tests: a real uvicorn server on a free loopback port
(``live_server``), signaling participants built through the app's own services (``signaling``), and
impaired links (loss, delay, bandwidth caps) in aiortc test clients' UDP path (``impairment``).

Imports go one way: ``tests/`` imports these (``tests/support.py`` and ``tests/api/signal_support.py``
re-export them under their old names); nothing under ``bench/`` imports ``tests/``.
"""
