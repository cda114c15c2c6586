"""Every request gets an id: the client's ``X-Request-ID`` if acceptable, else a fresh one.

The id is answered in the ``X-Request-ID`` response header (errors included), kept on
``req.context.request_id``, and set in the log context for the duration of the request, so every
line logged while handling it names it, and so does every task message sent meanwhile
(``actors.sending``), and with it the worker's log lines for those tasks. One access line is
logged per request.
"""

from __future__ import annotations

import logging
import time
import uuid

import falcon

from logging_setup import request_id_var, valid_request_id

HEADER = "X-Request-ID"

logger = logging.getLogger("callboard.access")


class RequestId:
    """Falcon middleware: accept or assign the request id, answer it, log the request."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        request_id = valid_request_id(req.get_header(HEADER)) or uuid.uuid4().hex
        req.context.request_id = request_id
        req.context.request_id_token = request_id_var.set(request_id)
        req.context.received_at = time.perf_counter()
        resp.set_header(HEADER, request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_header(HEADER, req.context.request_id)
        elapsed_ms = (time.perf_counter() - req.context.received_at) * 1000
        logger.info(
            "%s %r answered %s in %.1f ms.", req.method, req.path, resp.status_code, elapsed_ms
        )
        request_id_var.reset(req.context.request_id_token)
