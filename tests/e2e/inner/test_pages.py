"""Every page loads under the strict CSP with no console error, passes axe-core, and is screenshotted."""

from __future__ import annotations

from tests.e2e.browser import Browsers
from tests.e2e.inner.flows import invite_link
from tests.support import LiveServer

SIGNED_OUT_PAGES = {
    "/": "login",
    "/join": "no-invite",
    "/console": "signed-out",
    "/staff": "signed-out",
    "/attendance": "signed-out",
}


async def test_every_page_loads_clean_and_accessible(server: LiveServer, people: Browsers) -> None:
    visitor = await people.launch("visitor")
    for path, screen in SIGNED_OUT_PAGES.items():
        response = await visitor.page.goto(path)
        assert response is not None and response.status == 200, path
        csp = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        await visitor.on_screen(screen)
        await visitor.screenshot(f"{path.strip('/') or 'index'}-{screen}")
        await visitor.assert_accessible(path)
    await visitor.assert_clean()


async def test_join_link_shows_name_step_then_camera_preview(server: LiveServer, people: Browsers) -> None:
    client = await people.launch("client")
    # Issue 11: the link is exchanged on arrival, so it has to be a real one (a made-up one is refused).
    await client.page.goto(await invite_link(server, "Jordan"))
    await client.on_screen("confirm")
    # The token left the address bar at once (it would otherwise sit in history and screenshots).
    assert "#" not in client.page.url and "invite" not in client.page.url
    await client.screenshot("join-confirm")
    await client.assert_accessible("join: confirm")
    await client.page.get_by_role("button", name="Continue").click()
    await client.on_screen("setup")
    # The fake camera delivers frames into the preview.
    await client.wait_until("document.querySelector('#preview').videoWidth > 0")
    await client.wait_until("document.querySelector('#camera-select').options.length > 0")
    assert await client.page.get_by_label("Camera", exact=True).is_enabled()
    assert await client.page.get_by_label("Microphone", exact=True).is_enabled()
    await client.screenshot("join-setup")
    await client.assert_accessible("join: setup")
    await client.assert_clean()


async def test_login_form_is_keyboard_operable_and_reports_errors(
    server: LiveServer, people: Browsers
) -> None:
    visitor = await people.launch("visitor")
    await visitor.page.goto("/")
    await visitor.on_screen("login")
    # Focus starts on the page heading; Tab walks the form's fields in order.
    assert await visitor.page.evaluate("document.activeElement.id") == "login-title"
    await visitor.page.keyboard.press("Tab")
    assert await visitor.page.evaluate("document.activeElement.id") == "username"
    await visitor.page.keyboard.type("nobody")
    await visitor.page.keyboard.press("Tab")
    assert await visitor.page.evaluate("document.activeElement.id") == "password"
    await visitor.page.keyboard.press("Enter")  # submit with an empty password
    error = visitor.page.locator("#login-error")
    await error.wait_for(state="visible", timeout=5000)
    assert "password" in (await error.text_content() or "").lower()
    await visitor.screenshot("login-error")
    await visitor.assert_clean()
