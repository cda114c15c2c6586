"""The dashboard: one static page at ``/`` (and ``/dashboard``), its assets under
``/dashboard/assets``.

The page holds no data and needs no token to load: it asks the user for the API token, keeps it
in the browser's localStorage and sends it as a bearer token on each call to the API, which it
polls for queues, workers, tasks and rebalance runs. Plain HTML, CSS and JavaScript from
``web/assets/dashboard``, no build step and nothing from another origin, which the page's
Content-Security-Policy enforces.
"""

from __future__ import annotations

from pathlib import Path

import falcon

#: The page and its assets, inside the package.
ASSETS_DIR = Path(__file__).parent / "assets" / "dashboard"
PAGE = ASSETS_DIR / "index.html"
#: Where the assets are served (``web/auth.py`` lets this prefix through without a token).
ASSETS_PREFIX = "/dashboard/assets"
#: Paths that answer the page.
PAGE_PATHS = ("/", "/dashboard")
#: Same-origin only: no inline script, no CDN, no framing, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class DashboardResource:
    """``GET /``: the dashboard page (no token needed; it asks for one)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["no-cache"]
        resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.data = PAGE.read_bytes()


def add_dashboard_routes(app: falcon.App) -> None:
    """Serve the dashboard page at ``PAGE_PATHS`` and its assets under ``ASSETS_PREFIX``."""
    page = DashboardResource()
    for path in PAGE_PATHS:
        app.add_route(path, page)
    app.add_static_route(ASSETS_PREFIX, str(ASSETS_DIR))
