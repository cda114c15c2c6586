"""Bearer-token authentication for every route but the health checks and the static pages.

Tokens come from ``CALLBOARD_API_TOKEN`` (comma-separated, so a token can be rotated: add the
new one, move the clients, drop the old one). The presented token is compared with every
configured token in constant time, so neither a match nor its position leaks through timing.
"""

from __future__ import annotations

import hmac
import logging

import falcon

from web.errors import Problem

#: Paths answered without a token: health checks for orchestrators, and the static docs and
#: dashboard pages (they hold no data; each asks for the token itself before it calls the API).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/", "/dashboard"})
PUBLIC_PREFIXES = ("/docs/assets/", "/dashboard/assets/")
REALM = 'Bearer realm="callboard"'

logger = logging.getLogger("callboard.web")


class BearerAuth:
    """Falcon middleware: 401 problem with ``WWW-Authenticate`` unless a valid token is sent."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = [token.encode() for token in tokens]

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path in PUBLIC_PATHS or req.path.startswith(PUBLIC_PREFIXES):
            return
        header = req.get_header("Authorization") or ""
        scheme, _, presented = header.partition(" ")
        if not header:
            raise _unauthorized("A bearer token is required: send `Authorization: Bearer <token>`.")
        if scheme.lower() != "bearer" or not self._matches(presented.strip().encode()):
            raise _unauthorized("The bearer token is not valid.", error='error="invalid_token"')

    def _matches(self, presented: bytes) -> bool:
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(token, presented)
        return matched


def _unauthorized(detail: str, *, error: str | None = None) -> Problem:
    challenge = f"{REALM}, {error}" if error else REALM
    return Problem(
        falcon.HTTP_401,
        title="Unauthorized",
        detail=detail,
        headers={"WWW-Authenticate": challenge},
    )
