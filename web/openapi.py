"""The OpenAPI 3.1 document, generated from the routes and their pydantic models, and ``/docs``.

spectree (a well-kept library that binds pydantic models to Falcon responders) validates each
decorated responder's query, headers and body, and generates the document from the same
decorators, so what is documented is what is enforced. Two things are added to its output:
error answers are ``application/problem+json`` (spectree only knows ``application/json``), and
the bearer security scheme. ``/docs`` renders the document with Swagger UI, whose assets come from
the ``swagger-ui-py`` package and are served by us: no CDN, it works offline.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import falcon
import swagger_ui
from spectree import SecurityScheme, SecuritySchemeData, SpecTree

from web import schemas
from web.errors import validation_problem

#: Where Swagger UI's static assets are, inside the swagger-ui-py package.
SWAGGER_UI_ASSETS = Path(swagger_ui.__file__).parent / "static"
DOCS_PAGE = Path(__file__).parent / "assets" / "docs.html"
PROBLEM_MEDIA_TYPE = "application/problem+json"
#: Routes answered without a token.
PUBLIC_ROUTES = ("/healthz", "/readyz")
#: Headers that always come with an answer of this status, on whichever route gives it.
STATUS_HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "description": "The bearer challenge (RFC 6750).",
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer "},
        }
    },
    "503": {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}
LOCATION_HEADER = {
    "Location": {
        "description": "The task's own URL.",
        "required": True,
        "schema": {"type": "string", "pattern": "^/tasks/[0-9a-f-]{36}$"},
    }
}
#: Operations whose successful answers carry the task's ``Location``.
LOCATED_OPERATIONS = {("/tasks", "post"), ("/tasks/{task_id}/retry", "post")}


def _raise_validation_problem(req, resp, error, instance, model_adapter) -> None:
    # spectree's "before" hook: turn a pydantic ValidationError into our 422 problem.
    if error is not None:
        raise validation_problem(error)


spec = SpecTree(
    "falcon",
    mode="strict",
    title="Callboard",
    version="1.0",
    description=(
        "A durable job service: tasks are recorded in PostgreSQL before any message exists, "
        "run by Dramatiq workers, and repaired every 10 s after any crash. Every error is "
        "`application/problem+json` (RFC 9457)."
    ),
    page_templates={},
    # Plain model names in the document (spectree appends a hash by default).
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda parent, child: child,
    before=_raise_validation_problem,
    validation_error_model=schemas.Problem,
    security_schemes=[
        SecurityScheme(
            name="bearer",
            data=SecuritySchemeData(
                type="http", scheme="bearer", description="One of CALLBOARD_API_TOKEN's tokens."
            ),
        )
    ],
    security={"bearer": []},
)


def openapi_document(app: falcon.App) -> dict:
    """The OpenAPI document of ``app``'s decorated routes, with problem+json errors and the
    headers that come with some answers."""
    spec.app = app  # spectree finds the routes through the app it documents
    document = copy.deepcopy(spec.spec)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path in PUBLIC_ROUTES:
                operation["security"] = []
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if not status.startswith("2") and "application/json" in content:
                    response["content"] = {PROBLEM_MEDIA_TYPE: content["application/json"]}
                headers = dict(STATUS_HEADERS.get(status, {}))
                if status.startswith("2") and (path, method) in LOCATED_OPERATIONS:
                    headers.update(LOCATION_HEADER)
                if headers:
                    response["headers"] = {**response.get("headers", {}), **headers}
    return document


class OpenApiResource:
    """``GET /openapi.json``: the machine-readable contract."""

    def __init__(self, app: falcon.App) -> None:
        self.app = app
        self._body: bytes | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._body is None:
            self._body = json.dumps(openapi_document(self.app)).encode()
        resp.content_type = "application/json"
        resp.data = self._body


class DocsResource:
    """``GET /docs``: Swagger UI for people, asking for the API token in the page."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.data = DOCS_PAGE.read_bytes()


def add_docs_routes(app: falcon.App) -> None:
    """Serve ``/openapi.json``, ``/docs`` and Swagger UI's assets under ``/docs/assets``."""
    app.add_route("/openapi.json", OpenApiResource(app))
    app.add_route("/docs", DocsResource())
    app.add_static_route("/docs/assets", str(SWAGGER_UI_ASSETS))
