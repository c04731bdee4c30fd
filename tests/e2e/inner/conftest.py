"""Fixtures for the browser tests; they run only inside the loopback-only namespace (see ../test_browser_suite.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import pytest
from _pytest._code.code import ExceptionRepr

from tests.e2e.browser import Browsers, browsers
from tests.e2e.inner.fault_proxy import FaultProxy
from tests.support import LiveServer, free_port
from vIOP.session.services import Services


@pytest.fixture(scope="session", autouse=True)
def loopback_only_namespace() -> None:
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        pytest.exit(
            f"the browser tests must run in a loopback-only network namespace (found {interfaces}); "
            "run tests/e2e/test_browser_suite.py, which sets it up",
            returncode=3,
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failed test's report carries the relay's last layer changes for every subscriber, with their
    reasons, and its video legs now: a media wait that failed on a CI machine then says whether the relay
    chose it (and why), and what each leg carries."""
    outcome = yield
    report = outcome.get_result()
    live = getattr(item, "funcargs", {}).get("server")
    if report.when != "call" or not report.failed or not isinstance(live, LiveServer):
        return
    services = live.app.state.services
    relay = services.relay if isinstance(services, Services) else None
    if relay is None or not isinstance(report.longrepr, ExceptionRepr):
        return
    sections = (
        ("relay layer changes per subscriber", relay.layer_changes(), "(none)"),
        ("relay video legs per subscriber", relay.video_legs(), "(no video)"),
    )
    for title, per_subscriber, empty in sections:
        lines = [
            f"{pid}:\n    " + "\n    ".join(entries or [empty]) for pid, entries in per_subscriber.items()
        ]
        report.longrepr.addsection(title, "\n".join(lines) or "(no media sessions)")


@pytest.fixture
def proxy_port() -> int:
    return free_port()


@pytest.fixture
async def server(live_server_factory: Callable[..., Any], proxy_port: int) -> AsyncIterator[LiveServer]:
    """The app on 127.0.0.1, ICE host candidates on loopback. Allowed origins: its own and the fault proxy's."""
    port = free_port()
    async with live_server_factory(
        port=port,
        allowed_origins=f"http://127.0.0.1:{port},http://127.0.0.1:{proxy_port}",
        ice_host_addresses="127.0.0.1",
        heartbeat_seconds=2,
    ) as live:
        yield live


@pytest.fixture
async def people(request: pytest.FixtureRequest, server: LiveServer) -> AsyncIterator[Browsers]:
    async with browsers(request.node.name, server.base_url) as launched:
        yield launched


@pytest.fixture
async def fault_proxy(server: LiveServer, proxy_port: int) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(target_port=server.settings.port, listen_port=proxy_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
