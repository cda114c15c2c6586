"""A small REST client for the CLI: JSON in and out, problem documents turned into errors.

It uses only the standard library (``urllib``), so the CLI adds no dependency.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

#: Seconds to wait for any one answer.
DEFAULT_TIMEOUT = 10.0


class ApiError(Exception):
    """The API answered with an error, or could not be reached; the message says which."""

    def __init__(self, message: str, *, status: int | None = None, problem: dict | None = None):
        super().__init__(message)
        self.status = status
        self.problem = problem or {}


class ApiClient:
    """Calls the Callboard API at ``base_url`` with a bearer ``token``."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` with query ``params`` (``None`` values are left out)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        return self.request("GET", path)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """POST ``body`` as JSON to ``path``."""
        return self.request("POST", path, body=body, headers=headers)

    def request(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        """Send one request; return the decoded JSON answer.

        Raises:
            ApiError: an error answer (with its problem document) or a connection failure.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach the API at {self.base_url}: {reason}") from None


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    raw = exc.read()
    try:
        problem = json.loads(raw)
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    title = problem.get("title") or exc.reason
    detail = problem.get("detail") or ""
    lines = [f"{exc.code} {title}" + (f": {detail}" if detail else "")]
    lines += [f"  {e.get('field')}: {e.get('message')}" for e in problem.get("errors") or []]
    return ApiError("\n".join(lines), status=exc.code, problem=problem)
