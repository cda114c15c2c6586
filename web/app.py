"""The Falcon application factory."""

from __future__ import annotations

import falcon

from actors.ledger_broker import LedgerRedisBroker
from settings import Settings
from web.errors import install_error_handlers
from web.limits import BodyLimit
from web.operations import HealthResource, ReadyResource, RebalanceResource, WorkersResource
from web.tasks import TasksResource


def create_app(settings: Settings, broker: LedgerRedisBroker | None = None) -> falcon.App:
    """Build the WSGI app. The database must already be initialised (``models.db``).

    ``broker`` defaults to the process's Dramatiq broker (``actors.broker``).
    """
    if broker is None:
        from actors import broker
    app = falcon.App(middleware=[BodyLimit(settings.max_body_bytes)])
    app.req_options.strip_url_path_trailing_slash = True
    install_error_handlers(app)
    tasks = TasksResource(broker)
    app.add_route("/tasks", tasks)
    app.add_route("/tasks/{task_id}", tasks, suffix="item")
    app.add_route("/tasks/{task_id}/events", tasks, suffix="events")
    app.add_route("/tasks/{task_id}/cancel", tasks, suffix="cancel")
    app.add_route("/tasks/{task_id}/retry", tasks, suffix="retry")
    app.add_route("/healthz", HealthResource())
    app.add_route("/readyz", ReadyResource(broker))
    app.add_route("/workers", WorkersResource(broker))
    app.add_route("/rebalance", RebalanceResource())
    return app
