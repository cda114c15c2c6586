"""The Falcon application factory."""

from __future__ import annotations

import logging

import falcon
from falcon.routing import CompiledRouter

from actors.ledger_broker import LedgerRedisBroker
from settings import Settings
from web.auth import BearerAuth
from web.dashboard import add_dashboard_routes
from web.errors import install_error_handlers
from web.json_media import json_handlers
from web.limits import BodyLimit
from web.metrics import HttpMetrics, MetricsResource, metrics_registry
from web.openapi import add_docs_routes
from web.operations import (
    HealthResource,
    ReadyResource,
    RebalanceResource,
    StatsResource,
    WorkersResource,
)
from web.request_id import RequestId
from web.tasks import TasksResource

logger = logging.getLogger("callboard.web")


class AuthNotConfigured(RuntimeError):
    """Neither an API token nor an explicit opt-out of authentication is configured."""


def create_app(settings: Settings, broker: LedgerRedisBroker | None = None) -> falcon.App:
    """Build the WSGI app. The database must already be initialised (``models.db``).

    ``broker`` defaults to the process's Dramatiq broker (``actors.broker``).

    Raises:
        AuthNotConfigured: no ``CALLBOARD_API_TOKEN`` and auth not explicitly disabled.
    """
    if broker is None:
        from actors import broker
    registry = metrics_registry(broker)
    router = CompiledRouter()
    # First: every answer, a 401 or 413 included, gets a request id and is counted.
    observe = [RequestId(), HttpMetrics(registry, router)]
    app = falcon.App(middleware=[*observe, *_middleware(settings)], router=router)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.media_handlers = json_handlers()
    install_error_handlers(app)
    tasks = TasksResource(broker)
    app.add_route("/tasks", tasks)
    app.add_route("/tasks/batch", tasks, suffix="batch")
    app.add_route("/tasks/{task_id}", tasks, suffix="item")
    app.add_route("/tasks/{task_id}/events", tasks, suffix="events")
    app.add_route("/tasks/{task_id}/cancel", tasks, suffix="cancel")
    app.add_route("/tasks/{task_id}/retry", tasks, suffix="retry")
    app.add_route("/healthz", HealthResource())
    app.add_route("/readyz", ReadyResource(broker))
    app.add_route("/workers", WorkersResource(broker))
    app.add_route("/rebalance", RebalanceResource())
    app.add_route("/stats", StatsResource(broker))
    app.add_route("/metrics", MetricsResource(registry))
    add_docs_routes(app)
    add_dashboard_routes(app)
    return app


def _middleware(settings: Settings) -> list:
    middleware = [BodyLimit(settings.max_body_bytes)]
    if settings.api_tokens:
        return [BearerAuth(settings.api_tokens), *middleware]
    if not settings.auth_disabled:
        raise AuthNotConfigured(
            "Set CALLBOARD_API_TOKEN (one or more comma-separated tokens of 16+ characters), or "
            "CALLBOARD_AUTH_DISABLED=1 to run without authentication on a trusted machine."
        )
    logger.warning(
        "AUTHENTICATION IS DISABLED (CALLBOARD_AUTH_DISABLED=1): anyone who can reach this port "
        "can submit, read and cancel tasks. Never do this on a network you do not trust."
    )
    return middleware
