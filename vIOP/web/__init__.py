"""The reference web client: static pages (HTML, CSS, ES modules), no build step, no third-party CDN.

Every page is a static HTML file whose behaviour lives in ``static/js/pages/<page>.js``. Nothing about a
person is ever rendered server-side: pages fetch what they show through the authenticated API, so these
routes never see a token (the invite token travels in the URL fragment, which browsers do not send).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

# URL path -> HTML file under static/. The pages' own scripts are under static/js/pages/.
PAGES: dict[str, str] = {
    "/": "index.html",
    "/join": "join.html",
    "/console": "console.html",
    "/staff": "staff.html",
    "/attendance": "attendance.html",
}


def _page(url: str, filename: str) -> Route:
    path = STATIC_DIR / filename

    async def endpoint(request: Request) -> Response:
        return FileResponse(path, media_type="text/html; charset=utf-8")

    return Route(
        url,
        endpoint,
        methods=["GET", "HEAD"],
        name=f"page:{filename.removesuffix('.html')}",
        include_in_schema=False,  # HTML pages, not API: kept out of /openapi.json
    )


def routes() -> list[BaseRoute]:
    pages: list[BaseRoute] = [_page(url, filename) for url, filename in PAGES.items()]
    return [*pages, Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static")]
