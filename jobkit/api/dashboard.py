"""The dashboard: one static page at ``/dashboard`` that talks only to the public REST API.

The routes here serve files and need no auth; the page itself asks for a token and sends it as a
bearer header on every API call, so a visitor without a token sees nothing but the login form.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

STATIC_DIR = Path(__file__).parent / "static"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

# The page loads only same-origin scripts and styles and calls only the same-origin API.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file_response(name: str) -> Response[bytes]:
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR.resolve() or path.suffix not in _MEDIA_TYPES or not path.is_file():
        raise NotFoundException(f"no dashboard asset {name!r}")
    return Response(path.read_bytes(), media_type=_MEDIA_TYPES[path.suffix], headers=_HEADERS)


@get(["/dashboard", "/dashboard/"], include_in_schema=False, sync_to_thread=False)
def dashboard_page() -> Response[bytes]:
    """The single HTML page; everything after the ``#`` (token, current view) stays in the browser."""
    return _file_response("index.html")


@get("/dashboard/static/{name:str}", include_in_schema=False, sync_to_thread=False)
def dashboard_asset(name: FromPath[str]) -> Response[bytes]:
    """A file of ``jobkit/api/static`` (flat directory; no sub-paths)."""
    return _file_response(name)


DASHBOARD_ROUTES = [dashboard_page, dashboard_asset]
