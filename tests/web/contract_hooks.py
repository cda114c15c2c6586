"""Schemathesis hooks for ``test_schemathesis.py``: the one rule the document cannot state.

``run_at`` must be less than 7 days from *now* (Dramatiq's delay limit). JSON Schema has no
"relative to the current time" keyword, so the document can only describe the rule in words;
a positive test case whose ``run_at`` is 7 days or more away is therefore schema-valid yet
rightly refused with a 422. Such positive cases are skipped here, and only they: every other
positive case must still be accepted, and negative cases are all kept. The 422 itself is
tested in ``test_contract.py``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import schemathesis
from schemathesis import GenerationMode

#: Keep well inside the limit, so the clock moving during a request cannot matter.
HORIZON = timedelta(days=7) - timedelta(hours=1)


@schemathesis.hook
def filter_case(context, case) -> bool:
    """Keep every case but a positive one with a ``run_at`` beyond the 7-day horizon."""
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return True
    body = case.body if isinstance(case.body, dict) else {}
    items = body.get("tasks") if isinstance(body.get("tasks"), list) else [body]
    return not any(_beyond_horizon(item) for item in items if isinstance(item, dict))


def _beyond_horizon(submission: dict) -> bool:
    run_at = submission.get("run_at")
    if not isinstance(run_at, str):
        return False
    # To the second is precise enough here; the leap second 23:59:60 is valid RFC 3339, but
    # Python's parser wants :59.
    text = re.sub(r"\.[0-9]+", "", run_at.upper())
    text = re.sub(r"(T[0-9]{2}:[0-9]{2}:)60", r"\g<1>59", text)
    try:
        return datetime.fromisoformat(text) - datetime.now(UTC) >= HORIZON
    except (ValueError, TypeError):
        return False  # not a date-time: the server refuses it, as a positive case it fails
    except OverflowError:
        return True
