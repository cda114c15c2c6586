"""The Dramatiq broker, bound at import from ``REDIS_URL``, as Dramatiq's ``@actor`` requires.

This is the one module that does I/O setup at import time (the client connects lazily, on first
use). Its middleware are the stock ones we need plus Callboard's own:
- ``LogContext``, ``WorkerMetrics``: our log format with each message's task and request id, and
  the worker-side metrics published to Redis (first, so they see every message and its outcome).
- ``TimeLimit``: a task attempt that runs past its type's limit is interrupted and failed.
- ``PeriodiqMiddleware``: drops a rebalance message older than one period, so a backlog of
  stale rebalances never runs.
- ``LedgerSetup``, ``WorkerHeartbeat``, ``GracefulStop``: connect to PostgreSQL at boot, publish
  the heartbeat, make stop signals idempotent.
Dramatiq's ``Retries`` is left out on purpose: the ledger and the rebalance own retry and
recovery, so a failure never silently re-runs a task.
"""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.middleware import TimeLimit
from periodiq import PeriodiqMiddleware

from actors import worker_state
from actors.graceful_stop import GracefulStop
from actors.heartbeat import WorkerHeartbeat
from actors.ledger_broker import LedgerRedisBroker
from actors.ledger_setup import LedgerSetup
from actors.log_context import LogContext
from actors.worker_metrics import DEFAULT_PUBLISH_INTERVAL, WorkerMetrics
from settings import Settings, get_settings

#: Seconds to wait for Redis to accept a connection, and for any one reply.
REDIS_CONNECT_TIMEOUT = 5
REDIS_SOCKET_TIMEOUT = 15
#: Floor of Dramatiq's own broker heartbeat timeout, in seconds.
MIN_BROKER_HEARTBEAT_TIMEOUT = 10.0


def redis_client(url: str, *, verify_tls: bool = True) -> redis.Redis:
    """A Redis client with timeouts, so a lost Redis fails calls instead of hanging them.

    ``verify_tls=False`` keeps a ``rediss://`` connection encrypted but accepts a self-signed
    certificate, as Heroku Redis serves (``CALLBOARD_REDIS_TLS_VERIFY=false``).
    """
    tls = {"ssl_cert_reqs": "none"} if url.startswith("rediss://") and not verify_tls else {}
    return redis.Redis.from_url(
        url,
        **tls,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=30,
    )


def broker_heartbeat_timeout(settings: Settings) -> float:
    """Seconds after which Dramatiq's maintenance treats a silent broker process as dead.

    Every consumer thread of a live process touches this heartbeat at least once a second, so
    the timeout only has to ride out a stall. Stock Dramatiq waits 60 s, which strands the
    messages a killed worker had prefetched for a minute; we follow our own heartbeat's
    lifetime instead, with a floor of ``MIN_BROKER_HEARTBEAT_TIMEOUT``. A live process wrongly
    judged dead only causes duplicate deliveries, which the ledger's claim makes harmless.
    """
    return max(MIN_BROKER_HEARTBEAT_TIMEOUT, settings.heartbeat_ttl)


def make_broker(settings: Settings) -> LedgerRedisBroker:
    """Build the broker and its middleware from ``settings``."""
    client = redis_client(settings.redis_url, verify_tls=settings.redis_tls_verify)
    state = worker_state.current
    return LedgerRedisBroker(
        client=client,
        heartbeat_timeout=int(broker_heartbeat_timeout(settings) * 1000),
        middleware=[
            LogContext(settings),
            WorkerMetrics(
                state,
                client,
                interval=min(settings.heartbeat_interval, DEFAULT_PUBLISH_INTERVAL),
                ttl=settings.heartbeat_ttl,
            ),
            TimeLimit(),
            PeriodiqMiddleware(skip_delay=settings.rebalance_period),
            LedgerSetup(settings.database_url),
            WorkerHeartbeat(
                state,
                client,
                interval=settings.heartbeat_interval,
                ttl=settings.heartbeat_ttl,
            ),
            GracefulStop(state, timeout=settings.shutdown_timeout),
        ],
    )


broker = make_broker(get_settings())
dramatiq.set_broker(broker)
