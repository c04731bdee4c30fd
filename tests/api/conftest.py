"""HTTP API fixtures: ``api`` is a live server plus an httpx client on its loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.support import Api
from tests.support import LiveServer


@pytest.fixture
async def api(live_server: LiveServer) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=15) as http:
        yield Api(live_server, http)
