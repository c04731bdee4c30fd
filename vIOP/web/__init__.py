"""The reference web client: static pages (HTML, CSS, ES modules), no build step, no third-party CDN."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def routes() -> list[BaseRoute]:
    return [Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static")]
