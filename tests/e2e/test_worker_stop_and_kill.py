"""End-to-end: a worker stopped while it boots, and messages held by a worker killed with -9.

Both tests pin bugs found while writing ``test_stack.py``.
"""

from __future__ import annotations

import time

import pytest

from .api import submit, task, wait_all_final
from .stack import FAST_REBALANCE_ENV, child_pids

#: The Procfile's default number of worker processes.
WORKER_PROCESSES = 2
#: SIGTERM's bit in /proc/<pid>/status's signal masks.
SIGTERM_BIT = 1 << (15 - 1)


def accepts_sigterm(pid: int) -> bool:
    """Whether ``pid`` has unblocked SIGTERM (Dramatiq's worker processes start with it blocked).

    A TERM that arrives while it is still blocked is delivered at the unblock, before Dramatiq's
    handler can log (``NameError: ... 'logger'``): an upstream race of a few milliseconds after
    the fork, which this test leaves aside to target the import phase that follows it.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except FileNotFoundError:
        return False
    return not int(fields["SigBlk"].strip(), 16) & SIGTERM_BIT


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_a_worker_stopped_while_it_boots_exits_0(stack):
    # Given a worker whose processes have just been forked and are still importing the actors
    stack.start(["worker"], extra_env=FAST_REBALANCE_ENV)
    main_pid = stack.pid("worker")

    def booting() -> bool:
        children = child_pids(main_pid)
        return len(children) >= WORKER_PROCESSES and all(map(accepts_sigterm, children))

    stack.wait_until(booting, timeout=10, interval=0.005)

    # When its process group gets SIGTERM, as honcho or a PaaS sends it
    codes = stack.stop(["worker"], timeout=15)

    # Then it stops cleanly
    log = stack.log_text("worker")
    assert codes == {"worker": 0}, log
    assert "Killing worker process" not in log, log


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_tasks_prefetched_by_a_killed_worker_run_again_within_seconds(stack):
    # Given one worker process (5 threads, so it prefetches up to 10 messages) holding ten
    # B tasks: five running, five prefetched and still queued in the ledger
    one_process = {**FAST_REBALANCE_ENV, "CALLBOARD_WORKER_PROCESSES": "1"}
    stack.start(extra_env=one_process)
    stack.wait_http_ready()
    stack.wait_workers(1)
    tasks = [submit(stack, "b", {"duration_ms": 3000, "steps": 3}) for _ in range(10)]
    stack.wait_until(
        lambda: sum(task(stack, t)["status"] == "running" for t in tasks) == 5,
        timeout=10,
        message="five B tasks running",
    )

    # When the worker is killed with -9 and a new one starts
    stack.kill("worker")
    killed_at = time.monotonic()
    stack.start(["worker"], extra_env=one_process)

    # Then the running tasks are recovered (heartbeat 3 s, rebalance every 2 s) and the
    # prefetched ones are sent again as well: all ten run within seconds, in two rounds of five
    finished = wait_all_final(stack, tasks, timeout=25)
    assert {t["status"] for t in finished.values()} == {"succeeded"}, finished
    assert time.monotonic() - killed_at < 25
