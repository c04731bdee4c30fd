"""Launching Debian's Chromium under Playwright, for benchmarks and for the browser tests
(``tests/e2e/browser.py``): one persistent context with a fresh profile and ``HOME``, fake camera and
microphone. Never ``playwright install``: the browser is ``/usr/bin/chromium`` from apt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Playwright

CHROMIUM: Final = Path("/usr/bin/chromium")

CHROMIUM_FLAGS: Final = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


async def launch_chromium(
    playwright: Playwright,
    home: Path,
    *,
    base_url: str,
    init_script: str,
    extra_args: Sequence[str] = (),
    executable: Path = CHROMIUM,
    device_scale_factor: float | None = None,
) -> tuple[BrowserContext, Page]:
    """Chromium with its profile under ``home`` (also its ``HOME``), ``init_script`` run before any page
    script, and its first page. ``extra_args``: flags on top of :data:`CHROMIUM_FLAGS`. The caller closes
    the context and removes ``home``."""
    context = await playwright.chromium.launch_persistent_context(
        str(home / "profile"),
        executable_path=str(executable),
        headless=True,
        args=[*CHROMIUM_FLAGS, *extra_args],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        base_url=base_url,
        viewport={"width": 1280, "height": 800},
        device_scale_factor=device_scale_factor,
        locale="en-US",
    )
    try:
        await context.add_init_script(init_script)
        page = context.pages[0] if context.pages else await context.new_page()
    except BaseException:
        with contextlib.suppress(Exception):
            await context.close()
        raise
    return context, page
