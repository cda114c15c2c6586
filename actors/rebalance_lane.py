"""A worker thread of its own for the rebalance, so that busy task threads never hold it up.

Dramatiq's consumers put every message they fetch on one work queue, shared by the process's
worker threads. With every thread busy with a long task (a B task may run ten minutes), a
rebalance message waits behind them until periodiq's middleware drops it as stale: no repair runs
in that process, and when every live worker is that busy, a dead worker's tasks are not recovered
within the README's bound (measured: not at all while the tasks ran). This middleware gives the
rebalance queue and its delay queue a work queue and a worker thread of their own in each worker
process; task messages never reach that thread.
"""

from __future__ import annotations

import logging
from queue import PriorityQueue

from dramatiq import Middleware
from dramatiq.common import dq_name
from dramatiq.worker import WorkerThread

logger = logging.getLogger("callboard.worker")


class RebalanceLane(Middleware):
    """Routes the messages of ``queue_name`` to a dedicated worker thread in each worker."""

    def __init__(self, queue_name: str) -> None:
        self.queue_names = (queue_name, dq_name(queue_name))

    def after_worker_boot(self, broker, worker) -> None:
        consumers = [worker.consumers[n] for n in self.queue_names if n in worker.consumers]
        if not consumers:
            return  # this worker does not consume the queue (``--queues``)
        lane: PriorityQueue = PriorityQueue()
        for consumer in consumers:
            # Read at each message, so the switch applies from the next fetched message on; one
            # already on the shared queue is still run by a task thread.
            consumer.work_queue = lane
        thread = WorkerThread(
            broker=broker,
            consumers=worker.consumers,
            work_queue=lane,
            worker_timeout=worker.worker_timeout,
        )
        thread.start()
        # Dramatiq's stop() stops and joins every thread in this list, ours included.
        worker.workers.append(thread)
        logger.debug("Queue(s) %r run on a worker thread of their own.", self.queue_names)
