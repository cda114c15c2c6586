"""JSON request bodies read as JSON Schema reads them, with a nesting limit.

Python's ``json`` module recurses once per nesting level: a body of 100,000 ``[`` raises
``RecursionError`` deep inside Falcon. No Callboard request nests more than a few levels, so a
deeper body is a 422.

Numbers follow JSON Schema, the language of the API document: ``3.0`` *is* the integer 3 there
(an integer is "a number with a zero fractional part"), so it is read as ``3``; ``2.5`` stays a
float, which every integer field refuses. An integer too long for Python to convert is read as
infinity, which every field refuses with a 422 naming it. ``NaN`` and ``Infinity`` are not JSON
at all: 400.
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
        value = json.loads(text, parse_float=_number, parse_int=_integer, parse_constant=_not_json)
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


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def _integer(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return float(text)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
