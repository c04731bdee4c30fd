"""The browser tests live in ``inner/`` and only run inside the loopback-only network namespace that
``test_browser_suite.py`` creates; a normal ``pytest`` run collects only that outer test."""

from __future__ import annotations

import os

INNER_ENV = "VIOP_E2E_INNER"

collect_ignore_glob = [] if os.environ.get(INNER_ENV) == "1" else ["inner/*"]
