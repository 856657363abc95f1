"""The web pages' HTTP adapter: the map at ``/`` and the static files it needs.

Pages and scripts come from the `web` package (``web/static``); Leaflet comes from the
`xstatic-leaflet` package, so nothing is fetched from a CDN. Map tiles are the only outside
resource, from `Settings.tiles_url`; without them the map still shows routes and buses. The
operator's pages need a login (`tracker.api.auth`): without one the browser is sent to ``/login``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import xstatic.pkg.leaflet
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from tracker.api.auth import caller_of
from web import STATIC_DIR

LEAFLET_DIR = Path(xstatic.pkg.leaflet.BASE_DIR)

router = APIRouter(include_in_schema=False)

PAGES = {"/": "index.html", "/operator": "operator.html", "/replay": "replay.html",
         "/login": "login.html"}  # fmt: skip


def _page(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not path.is_file():
        raise HTTPException(status_code=404, detail=f"page {name} is missing from web/static")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


async def _operators_page(request: Request, path: str) -> Response:
    """An operator's page, or the login page's address (coming back here after the login)."""
    if await caller_of(request) is None:
        return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
    return _page(PAGES[path])


@router.get("/")
async def rider_page() -> FileResponse:
    """Riders: the live map, routes, buses, stops."""
    return _page(PAGES["/"])


@router.get("/operator")
async def operator_page(request: Request) -> Response:
    """Operators: the fleet table, on-time shares, problems (after a login)."""
    return await _operators_page(request, "/operator")


@router.get("/replay")
async def replay_page(request: Request) -> Response:
    """Planners: play back a stored time window (after a login)."""
    return await _operators_page(request, "/replay")


@router.get("/login")
async def login_page() -> FileResponse:
    """Operators log in here; the page then goes on to its ``next`` path."""
    return _page(PAGES["/login"])


@router.get("/static/{path:path}")
async def static(path: str) -> FileResponse:
    return FileResponse(_inside(STATIC_DIR, path), headers={"Cache-Control": "no-cache"})


@router.get("/vendor/leaflet/{path:path}")
async def leaflet(path: str) -> FileResponse:
    return FileResponse(_inside(LEAFLET_DIR, path), headers={"Cache-Control": "max-age=86400"})


def _inside(root: Path, path: str) -> Path:
    """`root / path` if it is a file inside `root` (no `..` escapes), else 404."""
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        raise HTTPException(status_code=404, detail=f"no file {path!r}")
    return target
