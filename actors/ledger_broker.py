"""Dramatiq's Redis broker, adapted so that the ledger can see which tasks have a message.

Three changes to the stock ``RedisBroker``, all small:

* A message's Redis id is its Dramatiq ``message_id``, and a task's message id is the task id.
  The rebalance can then ask Redis "is there still a message for task X?" with one ``HEXISTS``
  per task instead of scanning every message body. (Stock Dramatiq uses a fresh uuid per enqueue
  because its Retries middleware re-enqueues the same message; our task actors never use Dramatiq
  retries, and a re-enqueue goes to the delay queue, a different hash, so ids never clash.)
* ``run_maintenance`` runs the broker's own dead-worker maintenance on demand. Stock Dramatiq runs
  it on 0.1 % of commands, so a dead worker's messages could stay stranded for many minutes.
* A consumer being closed (worker shutdown) puts the messages it fetched but never handed to a
  worker thread back on their queue. Stock Dramatiq drops that cache, leaving the messages in
  the stopped process's ack set until maintenance declares it dead.
* An idle consumer blocks on its queue's *wake-up list* (``BLPOP``) instead of sleeping through
  Dramatiq's polling back-off (up to 1 s); every enqueue pushes a token there in the same round
  trip. A message sent to idle workers starts within milliseconds, and idle workers use no CPU.
  Delay queues are polled every ``DELAY_POLL_S`` so that delayed tasks start close to their time.
* While Redis is unreachable, a consumer waits for the process's next reconnect attempt, which
  backs off, instead of being restarted every 3 s with two log lines (``actors.redis_outage``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from actors.redis_outage import RedisOutage

logger = logging.getLogger("callboard.broker")

#: Most wake-up tokens kept per queue: enough to wake every idle consumer, bounded when all are
#: busy (a stale token only costs one extra fetch).
WAKE_TOKENS_CAP = 64
#: Seconds between two looks at a delay queue for messages that have come due.
DELAY_POLL_S = 0.1


class LedgerRedisBroker(RedisBroker):
    """A ``RedisBroker`` whose messages are addressable by id, with on-demand maintenance."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: The reconnect schedule this process's consumers share while Redis is unreachable.
        self.outage = RedisOutage()

    @property
    def consumer_class(self):
        return _CacheReturningConsumer

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Enqueue ``message`` under its own id, optionally delayed by ``delay`` milliseconds."""
        (message,) = self.enqueue_many([(message, delay)])
        return message

    def enqueue_many(self, messages: Sequence[tuple[Message, int | None]]) -> list[Message]:
        """Enqueue many ``(message, delay)`` pairs, and wake idle consumers, in one round trip."""
        addressed = [(self._addressed(message, delay), delay) for message, delay in messages]
        for message, delay in addressed:
            self.emit_before("enqueue", message, delay)
        self._execute_enqueue([message for message, _ in addressed])
        for message, delay in addressed:
            self.emit_after("enqueue", message, delay)
        return [message for message, _ in addressed]

    def wait_for_wakeup(self, queue_name: str, timeout_s: float) -> None:
        """Block until a message is sent to ``queue_name`` or ``timeout_s`` passes."""
        self.client.blpop([self._wake_key(queue_name)], timeout=timeout_s)

    def _execute_enqueue(self, messages: list[Message]) -> None:
        # EVALSHA straight into the pipeline: redis-py's Script objects would add a SCRIPT EXISTS
        # round trip to every pipeline. Should Redis have lost the script (a restart), load it
        # and send again; no enqueue ran, the script being unknown.
        dispatch = self.scripts["dispatch"]
        for attempt in (1, 2):
            pipeline = self.client.pipeline(transaction=False)
            for message in messages:
                args = self._dispatch_args(
                    "enqueue", message.queue_name, message.message_id, message.encode()
                )
                pipeline.evalsha(dispatch.sha, 1, self.namespace, *args)
            for queue_name, count in Counter(m.queue_name for m in messages).items():
                key = self._wake_key(queue_name)
                pipeline.rpush(key, *[1] * min(count, WAKE_TOKENS_CAP))
                pipeline.ltrim(key, -WAKE_TOKENS_CAP, -1)
            try:
                pipeline.execute()
                return
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self.client.script_load(dispatch.script)

    def _wake_key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}.wake"

    def do_fetch(self, queue_name: str, prefetch: int) -> list[bytes | None]:
        """Fetch up to ``prefetch`` messages of a queue (stock), noting that Redis answered."""
        messages = self._dispatch("fetch")(queue_name, prefetch)
        self.outage.answered()
        return messages

    def messages_present(self, queue_name: str, message_ids: Iterable[str]) -> dict[str, bool]:
        """Tell, for each id, whether a message with it is stored for ``queue_name``.

        A stored message is either waiting, delayed, or fetched by a worker and not acked yet.
        """
        ids = list(message_ids)
        pipeline = self.client.pipeline(transaction=False)
        for name in (queue_name, dq_name(queue_name)):
            for message_id in ids:
                pipeline.hexists(f"{self.namespace}:{name}.msgs", message_id)
        found = pipeline.execute()
        waiting, delayed = found[: len(ids)], found[len(ids) :]
        return {mid: bool(w or d) for mid, w, d in zip(ids, waiting, delayed, strict=True)}

    def queue_stats(self, queue_names: Iterable[str]) -> dict[str, dict[str, int]]:
        """Per queue: messages ``waiting``, ``delayed``, ``in_flight`` (fetched by a worker,
        not acked yet) and ``dead_lettered``, read in one round trip."""
        names = sorted(queue_names)
        pipeline = self.client.pipeline(transaction=False)
        for name in names:
            base = f"{self.namespace}:{name}"
            pipeline.llen(base)
            pipeline.hlen(f"{base}.msgs")
            pipeline.hlen(f"{base}.DQ.msgs")
            pipeline.zcard(f"{base}.XQ")
        counts = pipeline.execute()
        stats = {}
        for i, name in enumerate(names):
            waiting, stored, delayed, dead = counts[4 * i : 4 * i + 4]
            stats[name] = {
                "waiting": waiting,
                "delayed": delayed,
                "in_flight": max(0, stored - waiting),
                "dead_lettered": dead,
            }
        return stats

    def run_maintenance(self, queue_names: Iterable[str]) -> None:
        """Requeue the unacked messages of dead broker processes on each queue, now."""
        dispatch = self.scripts["dispatch"]
        for queue_name in queue_names:
            for name in (queue_name, dq_name(queue_name)):
                dispatch(
                    keys=[self.namespace],
                    args=self._dispatch_args("maintain", name, maintenance=True),
                )

    def _addressed(self, message: Message, delay: int | None) -> Message:
        # Stock enqueue(), but the Redis id is the message id; a delayed message goes to the
        # queue's delay queue with its eta.
        message = message.copy(options={"redis_message_id": message.message_id})
        if delay is None:
            return message
        return message.copy(
            queue_name=dq_name(message.queue_name), options={"eta": current_millis() + delay}
        )

    def _dispatch_args(self, command: str, queue_name: str, *args, maintenance: bool = False):
        # The argument layout of dramatiq's dispatch.lua; "maintain" matches no command in it, so
        # the script only does its maintenance step.
        return [
            command,
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            int(maintenance),
            self._max_unpack_size(),
            *args,
        ]


class _CacheReturningConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, which requeues its unread prefetch cache when closed and waits
    out a Redis outage on the process's shared, backing-off reconnect schedule."""

    def __next__(self):
        outage = self.broker.outage
        # Waits are cut into poll intervals (``None`` means "nothing yet"), so that the consumer
        # thread still notices a stop request as often as it does when the queue is idle.
        poll_s = self.timeout / 1000
        if (wait := outage.wait_left()) > 0:
            time.sleep(min(wait, poll_s))
            return None
        try:
            if not self.message_cache and self.outstanding_message_count < self.prefetch:
                # Fill the cache here so that an empty queue blocks on its wake-up list rather
                # than in Dramatiq's sleeping back-off.
                self.message_cache = self.broker.do_fetch(
                    self.queue_name, self.prefetch - self.outstanding_message_count
                )
                if not self.message_cache:
                    delayed = self.queue_name.endswith(".DQ")
                    self.broker.wait_for_wakeup(
                        self.queue_name, min(poll_s, DELAY_POLL_S) if delayed else poll_s
                    )
                    return None
            message = super().__next__()
        except (ConnectionClosed, redis.ConnectionError, redis.TimeoutError) as exc:
            time.sleep(min(outage.failed(exc), poll_s))
            return None
        return message

    def close(self) -> None:
        cached = [Message.decode(data) for data in self.message_cache if data is not None]
        self.message_cache = []
        if cached:
            try:
                self.requeue(cached)
            except redis.RedisError as exc:
                # Still in this process's ack set: maintenance requeues them once it is dead.
                logger.warning("Could not requeue %d prefetched message(s): %s", len(cached), exc)
        super().close()
