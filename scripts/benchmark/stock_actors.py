"""The stock Dramatiq baseline: one no-op actor on a plain ``RedisBroker``, nothing else.

Run as ``dramatiq scripts.benchmark.stock_actors --processes N --threads T`` with
``CALLBOARD_BENCH_STOCK_REDIS_URL`` naming the bench's Redis db. Binding the broker at import is
what Dramatiq's ``@actor`` requires. No ledger, no HTTP, the default middleware.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

#: Kept apart from Callboard's ``dramatiq`` namespace in the same Redis db.
NAMESPACE = "bench-stock"
QUEUE_NAME = "bench_noop"
ACTOR_NAME = "noop"

broker = RedisBroker(url=os.environ["CALLBOARD_BENCH_STOCK_REDIS_URL"], namespace=NAMESPACE)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name=ACTOR_NAME, queue_name=QUEUE_NAME, max_retries=0)
def noop() -> None:
    """Do nothing: the cost measured is Dramatiq's own."""
