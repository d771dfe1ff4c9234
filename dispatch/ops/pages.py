"""The dashboard page at ``/`` (the front end built into ``web/dist`` by ``make web``) and what
it needs besides the feed: the city's district outlines from the pack (no tile server)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

WEB_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>City operations hub</title>
<p>The dashboard is not built yet: run <code>make web</code> (npm), then reload.</p>"""

router = APIRouter(tags=["operations centre"])


def _page(name: str) -> Response:
    page = WEB_DIST / name
    if not page.is_file():
        return HTMLResponse(NOT_BUILT, status_code=503)
    return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
async def dashboard() -> Response:
    """The operations centre's dashboard (web/dist/index.html)."""
    return _page("index.html")


@router.get("/workbench", include_in_schema=False)
async def workbench() -> Response:
    """The department workbench (web/dist/workbench.html): a department's ticket queue."""
    return _page("workbench.html")


@router.get("/api/v1/ops/districts", response_class=FileResponse)
async def districts(request: Request) -> FileResponse:
    """The pack's districts as GeoJSON (WGS-84; properties ``code``, ``name``, ``label_point``):
    public outlines, what the map draws instead of tiles."""
    path = request.app.state.settings.pack_dir / "districts.geojson"
    return FileResponse(path, media_type="application/geo+json",
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip
