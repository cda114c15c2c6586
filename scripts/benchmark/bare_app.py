"""The bare HTTP baseline: a Falcon app answering a small JSON body, on stock ``waitress.serve``.

``python -m scripts.benchmark.bare_app --port P --threads T``: no middleware, no database, no
Redis; the threads match ``CALLBOARD_WEB_THREADS``. SIGTERM ends it (waitress's default).
"""

from __future__ import annotations

import argparse
import sys

import falcon
import waitress

#: The path the baseline loads.
PATH = "/hello"


class _Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok", "service": "bare-waitress"}


def create_app() -> falcon.App:
    """A Falcon app whose ``GET /hello`` (and ``/healthz``) answers ``{"status": "ok", ...}``."""
    app = falcon.App()
    hello = _Hello()
    app.add_route(PATH, hello)
    app.add_route("/healthz", hello)
    return app


def main(argv: list[str] | None = None) -> int:
    """Serve the app until killed."""
    parser = argparse.ArgumentParser(prog="bare_app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    waitress.serve(create_app(), host="127.0.0.1", port=args.port, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
