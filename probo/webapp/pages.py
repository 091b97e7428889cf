"""The pages: an HTML shell for the trader app, one for the admin dashboard, and the
static files they load.

The shell is a plain HTML file (no template engine: nothing in it depends on the
request); ES modules under `static/js` draw every view in the browser from the JSON API
and the WebSocket, with the session cookie, from this origin only.
"""

from __future__ import annotations

from pathlib import Path

from litestar import MediaType, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
TEMPLATES_DIR = PACKAGE_DIR / "templates"

# Everything from this origin, nothing inline, no frames: the app asks no other host.
# `connect-src 'self'` covers the same-origin WebSocket (ws: and wss:) in CSP level 3.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# `same-origin`, not `no-referrer`: with no-referrer a browser sends `Origin: null` on
# a POST, which the API's CSRF check refuses as foreign.
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}

_TRADER_SHELL = (TEMPLATES_DIR / "trader.html").read_bytes()
_ADMIN_SHELL = (TEMPLATES_DIR / "admin.html").read_bytes()


@get("/", include_in_schema=False, media_type=MediaType.HTML)
async def trader_app() -> Response[bytes]:
    """The trader app; its views are client-side routes (`#/markets/12`, `#/wallet`)."""
    return Response(_TRADER_SHELL, media_type=MediaType.HTML, headers=PAGE_HEADERS)


@get("/admin", include_in_schema=False, media_type=MediaType.HTML)
async def admin_app() -> Response[bytes]:
    """The admin dashboard (`#/kyc`, `#/markets`). The shell holds no data: the page asks
    `/me` first and asks the admin API only when it says `role: "admin"`, and the API
    refuses everyone else anyway."""
    return Response(_ADMIN_SHELL, media_type=MediaType.HTML, headers=PAGE_HEADERS)


async def _not_sniffed(response: Response) -> Response:
    """A module script must be run as what its type says (and `nosniff` makes it so)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# Revalidated on every load (ETag / Last-Modified): a deploy is seen at once, and the
# modules are small.
static_files = create_static_files_router(
    path="/static",
    directories=[STATIC_DIR],
    include_in_schema=False,
    cache_control=CacheControlHeader(no_cache=True),
    name="static",
    after_request=_not_sniffed,  # type: ignore[arg-type]
)

route_handlers = [trader_app, admin_app, static_files]
