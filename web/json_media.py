"""JSON request bodies with a nesting limit, so a hostile body gets a 422, not a crash.

Python's ``json`` module recurses once per nesting level: a body of 100,000 ``[`` raises
``RecursionError`` deep inside Falcon. No Callboard request nests more than a few levels.
"""

from __future__ import annotations

import json
from typing import Any

import falcon
from falcon import media

from web.errors import invalid

#: The deepest nesting of arrays and objects accepted in a request body.
MAX_DEPTH = 32


def json_handlers() -> media.Handlers:
    """Falcon media handlers whose JSON deserializer enforces ``MAX_DEPTH``."""
    handler = media.JSONHandler(loads=_loads_limited)
    return media.Handlers({falcon.MEDIA_JSON: handler})


def _loads_limited(text: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
        too_deep = True
    else:
        too_deep = _depth(value) > MAX_DEPTH
    if too_deep:
        raise invalid([{"field": "(body)", "message": f"nests deeper than {MAX_DEPTH} levels"}])
    return value


def _depth(value: Any) -> int:
    # Iterative, so that measuring a deep document cannot itself overflow the stack.
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest
