"""Refuse an oversized request body from its ``Content-Length``, before reading it."""

from __future__ import annotations

import falcon

from web.errors import Problem


class BodyLimit:
    """Falcon middleware: 413 problem for bodies over ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        length = req.content_length
        if length is not None and length > self.max_bytes:
            raise Problem(
                falcon.HTTP_413,
                title="Request body too large",
                detail=f"The body is {length} bytes; the limit is {self.max_bytes} bytes.",
            )
