"""Callboard's Dramatiq side: the broker, one module per task type, and the repair loop.

``dramatiq actors`` and ``periodiq actors`` import this package. Adding a task type means adding
one module here that calls ``task_types.register`` and importing it below.
"""

from actors import rebalance, task_a, task_b  # noqa: F401 - registers the actors
from actors.broker import broker

__all__ = ["broker"]
