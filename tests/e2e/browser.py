"""The real-browser harness: Debian's Chromium driven by Playwright, one browser per person.

Each :class:`Person` is its own Chromium (``bench.scenarios.chromium.launch_chromium``: a fresh profile and
``HOME``, fake camera and microphone), with loopback ICE allowed, and listeners that record console errors, page
errors and Content-Security-Policy violations from the first script on. Never ``playwright install``: the
browser is ``/usr/bin/chromium`` from apt.

These helpers only work inside the loopback-only network namespace that ``tests/e2e/test_browser_suite.py``
sets up: Chromium offers no loopback ICE candidates otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import BrowserContext, ConsoleMessage, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from bench.scenarios.chromium import launch_chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"

# Inside the namespace loopback is the only interface; without this Chromium gathers no candidate.
LOOPBACK_ICE = "--allow-loopback-in-peer-connection"

# Runs before any page script: records CSP violations the page itself could not report.
_RECORD_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""

_BLOCKING_IMPACTS = frozenset({"serious", "critical"})

# What page.evaluate raises when the page it ran in is being replaced by a navigation.
_NAVIGATING = ("Execution context was destroyed", "Cannot find context", "navigation")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "page"


@dataclass
class Person:
    """One person's browser: a context with one page, and everything it complained about."""

    name: str
    context: BrowserContext
    page: Page
    artifacts: Path
    profile: Path | None = None  # the user-data dir (Chromium's History database lives under it)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    shots: int = 0

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location
            self.console_errors.append(
                f"{message.text} ({location.get('url', '')}:{location.get('lineNumber', '')})"
            )

    async def csp_violations(self) -> list[str]:
        found = await self.page.evaluate("window.__cspViolations || []")
        return [str(v) for v in found]

    async def screenshot(self, label: str) -> Path:
        """Save a full-page PNG under test-artifacts/e2e/<test>/<nn>-<person>-<label>.png."""
        self.shots += 1
        path = self.artifacts / f"{self.shots:02d}-{_slug(self.name)}-{_slug(label)}.png"
        # Two animation frames: the screenshot then shows the page as it is now, not a stale frame.
        await self.page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def serious_accessibility_violations(self) -> list[str]:
        """axe-core in this page: every violation of serious or critical impact, one line each."""
        results = await Axe().run(self.page)
        lines = []
        for violation in results.response["violations"]:
            if violation.get("impact") in _BLOCKING_IMPACTS:
                targets = [", ".join(node["target"]) for node in violation["nodes"]]
                lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets}")
        return lines

    async def assert_clean(self, *, expected: tuple[re.Pattern[str], ...] = ()) -> None:
        """No console error, no uncaught exception and no CSP violation so far on this page.

        ``expected``: console errors the test caused on purpose (Chromium logs every request a cut network
        refused, and the page cannot silence that); each must match one pattern in full.
        """
        csp = await self.csp_violations()
        unexpected = [e for e in self.console_errors if not any(p.fullmatch(e) for p in expected)]
        problems = [f"console: {e}" for e in unexpected]
        problems += [f"uncaught: {e}" for e in self.page_errors]
        problems += [f"csp: {v}" for v in csp]
        assert not problems, f"{self.name}'s page reported problems:\n" + "\n".join(problems)

    async def assert_accessible(self, label: str) -> None:
        violations = await self.serious_accessibility_violations()
        assert not violations, f"axe on {self.name}'s {label}:\n" + "\n".join(violations)

    async def on_screen(self, screen: str, *, timeout_s: float = 10.0) -> None:
        """Wait until the page shows ``screen``: the body names it AND its section is actually rendered."""
        await self.wait_until(
            f"document.body?.dataset.screen === {screen!r} && "
            f"document.querySelector('section[data-screen={screen}]')?.getBoundingClientRect().height > 0",
            timeout_s=timeout_s,
        )

    async def wait_until(self, expression: str, *, timeout_s: float = 10.0) -> Any:
        """Poll a JavaScript expression (bounded) until it is truthy; return its value.

        Not ``page.wait_for_function``: its polling evaluates strings with ``eval`` inside the page, which
        the pages' CSP (rightly) refuses. ``page.evaluate`` goes through DevTools and is not subject to it.
        """
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while True:
            try:
                last = await self.page.evaluate(expression)
            except PlaywrightError as error:
                # A navigation replaced the document between two polls: poll the new one.
                if not any(sign in error.message for sign in _NAVIGATING):
                    raise
                last = f"(navigating: {error.message.splitlines()[0]})"
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.name}: still false after {timeout_s} s: {expression} (last: {last!r})"
                )
            await asyncio.sleep(0.1)


class Browsers:
    """Launches people's browsers for one test and closes them all, whatever happens."""

    def __init__(self, playwright: Playwright, artifacts: Path, base_url: str) -> None:
        self._playwright = playwright
        self._artifacts = artifacts
        self._base_url = base_url
        self._people: list[Person] = []
        self._homes: list[Path] = []

    async def launch(
        self, name: str, *, base_url: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> Person:
        """``extra_args``: Chromium flags on top of ``bench.scenarios.chromium.CHROMIUM_FLAGS`` and
        :data:`LOOPBACK_ICE` (e.g. a fake microphone file)."""
        home = Path(tempfile.mkdtemp(prefix=f"viop-e2e-{_slug(name)}-"))
        self._homes.append(home)
        context, page = await launch_chromium(
            self._playwright,
            home,
            base_url=base_url or self._base_url,
            init_script=_RECORD_CSP,
            extra_args=[LOOPBACK_ICE, *extra_args],
        )
        person = Person(
            name=name, context=context, page=page, artifacts=self._artifacts, profile=home / "profile"
        )
        page.on("console", person._on_console)
        page.on("pageerror", lambda error: person.page_errors.append(str(error)))
        self._people.append(person)
        return person

    async def close(self) -> None:
        for person in self._people:
            with contextlib.suppress(Exception):
                await person.context.close()
        for home in self._homes:
            shutil.rmtree(home, ignore_errors=True)


@contextlib.asynccontextmanager
async def browsers(test_name: str, base_url: str) -> AsyncIterator[Browsers]:
    artifacts = ARTIFACTS / _slug(test_name)
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    async with async_playwright() as playwright:
        launched = Browsers(playwright, artifacts, base_url)
        try:
            yield launched
        finally:
            await launched.close()
