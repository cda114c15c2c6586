"""Fault test: Ctrl+C on ``honcho start`` while clients are submitting tasks, then a restart.

A 2xx means "durably recorded": every task that got one must be stored and reach a final state
once the stack runs again, and no answer may be a 500 or show a traceback, however the requests
and the shutdown interleave.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
import requests

from tests.e2e.stack import Stack

from .observe import ledger_event_counts, ledger_statuses

#: Concurrent clients, each submitting tasks one after another.
CLIENTS = 8
#: Seconds the burst runs before Ctrl+C.
BURST_S = 1.5


class Client(threading.Thread):
    """Submits tasks until told to stop, keeping every answer (or connection error)."""

    def __init__(self, stack: Stack, number: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url = stack.url("/tasks")
        self.number = number
        self.stop = stop
        self.accepted: list[str] = []
        self.answers: Counter[int] = Counter()
        self.refused = 0
        self.bad: list[tuple[int, str]] = []

    def run(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {os.environ['CALLBOARD_API_TOKEN']}"
        sent = 0
        while not self.stop.is_set():
            sent += 1
            if sent % 10:
                body = {"type": "a", "payload": {"text": f"{self.number}/{sent}", "rounds": 100}}
            else:
                body = {"type": "b", "payload": {"duration_ms": 100, "steps": 1}}
            try:
                response = session.post(self.url, json=body, timeout=10)
            except requests.RequestException:
                self.refused += 1  # the web process stopped accepting, or is gone
                self.stop.wait(0.05)
                continue
            self.answers[response.status_code] += 1
            if response.status_code == 202:
                self.accepted.append(response.json()["id"])
            elif response.status_code >= 500 and (
                response.status_code != 503 or "Traceback" in response.text
            ):
                self.bad.append((response.status_code, response.text))
        session.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_ctrl_c_during_a_burst_of_posts_loses_no_accepted_task_and_a_restart_finishes_all(
    stack, db
):
    # Given the whole stack under honcho, and clients submitting tasks as fast as they can
    stack.start_honcho()
    stack.wait_http_ready()
    stack.wait_workers(2)
    stop = threading.Event()
    clients = [Client(stack, n, stop) for n in range(CLIENTS)]
    for client in clients:
        client.start()
    stack.wait_until(
        lambda: sum(len(c.accepted) for c in clients) >= 50, timeout=10, message="a burst"
    )
    burst_started = time.monotonic()
    stack.wait_until(lambda: time.monotonic() - burst_started >= BURST_S, timeout=BURST_S + 5)

    # When Ctrl+C reaches honcho mid-burst, and the clients keep trying until it has stopped
    honcho_rc = stack.stop_honcho(signum=signal.SIGINT, timeout=15)
    stop.set()
    for client in clients:
        client.join(timeout=15)
    accepted = [task_id for client in clients for task_id in client.accepted]
    answers = sum((client.answers for client in clients), Counter())
    refused = sum(client.refused for client in clients)

    # Then every process stopped cleanly, and no answer was a 500 or showed a traceback
    log = stack.log_text("honcho")
    assert stack.honcho_exit_codes() == {"web": 0, "worker": 0, "scheduler": 0}, log
    assert honcho_rc == 130 and "SIGKILL" not in log, log
    assert [bad for client in clients for bad in client.bad] == []
    assert set(answers) <= {202, 503}, answers
    # ... and every task that got a 202 is stored
    assert len(set(accepted)) == len(accepted)
    stored = ledger_statuses(db, accepted)
    assert sum(stored.values()) == len(accepted), stored

    # When the stack starts again
    stack.start_honcho()
    restarted = time.monotonic()

    # Then every stored task, each accepted one among them, succeeds exactly once
    all_ids = [str(row[0]) for row in db.execute_sql("SELECT id FROM tasks")]
    stack.wait_until(
        lambda: ledger_statuses(db, all_ids)["succeeded"] == len(all_ids),
        timeout=45,
        interval=0.5,
        message=lambda: f"every stored task to succeed: {ledger_statuses(db, all_ids)}",
    )
    finished_s = time.monotonic() - restarted
    assert set(all_ids) >= set(accepted)
    assert set(ledger_event_counts(db, all_ids, "succeeded").values()) == {1}
    print(
        f"Ctrl+C mid-burst: {len(accepted)} accepted (answers {dict(answers)}, {refused} refused"
        f" connections), {len(all_ids) - len(accepted)} stored without a 202; all succeeded"
        f" {finished_s:.1f} s after the restart"
    )
