"""The repair loop on real PostgreSQL and Redis: re-send lost messages, recover dead workers."""

from __future__ import annotations

import dataclasses
import json
import time

import psycopg2
import pytest

from actors.heartbeat import KEY_PREFIX, LIVENESS_MARKER_KEY
from actors.rebalance import REBALANCE_LOCK_KEY, run_rebalance
from actors.sending import send_tasks
from models import transitions
from models.db import connection_parameters
from models.tables import Task
from models.transitions import NewTask

DEAD_WORKER = "gone-host:4242:deadbeef"
LIVE_WORKER = "live-host:4343:cafecafe"


def create(db, task_type: str = "a", *, send: bool, broker=None, old: bool = True) -> str:
    """A queued task, with or without its message, queued long ago or just now."""
    payload = {"text": "x", "rounds": 1} if task_type == "a" else {"duration_ms": 1, "steps": 1}
    (task,) = transitions.create_tasks(db, [NewTask(task_type, payload)])
    if send:
        send_tasks(broker, [(task.id, task_type, None)])
    if old:
        db.execute_sql(
            "UPDATE tasks SET queued_at = now() - interval '1 hour' WHERE id = %s", (str(task.id),)
        )
    return str(task.id)


def drop_message(redis_client, broker, task_type: str, task_id: str) -> None:
    """Remove a task's message from Redis, as a Redis restart or flush would."""
    redis_client.hdel(f"{broker.namespace}:{task_type}.msgs", task_id)
    redis_client.lrem(f"{broker.namespace}:{task_type}", 0, task_id)


def kinds(db, task_id) -> list[str]:
    rows = db.execute_sql("SELECT kind FROM task_events WHERE task_id = %s ORDER BY id", (task_id,))
    return [kind for (kind,) in rows]


def recorded_runs(db) -> list[tuple]:
    return db.execute_sql(
        "SELECT resent, recovered, poisoned, dead_workers, detail FROM rebalance_runs"
        " ORDER BY started_at"
    ).fetchall()


def liveness_known_for_long(redis_client, settings) -> None:
    """Make Redis look like it has kept its data for longer than a heartbeat time-to-live."""
    redis_client.set(LIVENESS_MARKER_KEY, time.time() - settings.heartbeat_ttl - 60)


def beat(redis_client, worker_id: str) -> None:
    record = {"worker_id": worker_id, "beat_at": time.time(), "held": [], "interval": 1.0}
    redis_client.set(KEY_PREFIX + worker_id, json.dumps(record), px=60_000)


# -- re-sending lost messages ------------------------------------------------------------------


@pytest.mark.parametrize("task_type", ["a", "b"])
def test_a_queued_task_whose_message_was_lost_is_sent_again(
    db, broker, redis_client, settings, task_type
):
    # Given a task queued an hour ago whose message Redis lost
    task_id = create(db, task_type, send=True, broker=broker)
    drop_message(redis_client, broker, task_type, task_id)
    assert broker.messages_present(task_type, [task_id]) == {task_id: False}

    # When
    report = run_rebalance(broker, db, settings)

    # Then
    assert (report.resent, report.skipped) == (1, False)
    assert broker.messages_present(task_type, [task_id]) == {task_id: True}
    assert kinds(db, task_id) == ["created", "resent"]
    assert recorded_runs(db) == [(1, 0, 0, [], {"liveness_checked": True})]


def test_a_queued_task_that_still_has_its_message_is_not_sent_again(
    db, broker, redis_client, settings
):
    # Given
    task_id = create(db, "a", send=True, broker=broker)

    # When
    report = run_rebalance(broker, db, settings)

    # Then
    assert report.resent == 0
    assert kinds(db, task_id) == ["created"]
    assert redis_client.llen(f"{broker.namespace}:a") == 1
    assert recorded_runs(db) == [(0, 0, 0, [], {"liveness_checked": True})]


def test_a_task_without_a_message_is_left_alone_during_the_grace_period(
    db, broker, redis_client, settings
):
    # Given a task recorded just now whose send has not happened (yet)
    task_id = create(db, "a", send=False, old=False)

    # When
    report = run_rebalance(broker, db, settings)

    # Then
    assert report.resent == 0
    assert broker.messages_present("a", [task_id]) == {task_id: False}


def test_tasks_that_are_not_queued_are_never_sent_again(db, broker, redis_client, settings):
    # Given an old cancelled task and an old task running on a live worker, neither with a message
    cancelled = create(db, "a", send=False)
    transitions.cancel(db, cancelled)
    running = create(db, "b", send=False)
    transitions.claim(db, running, LIVE_WORKER)
    beat(redis_client, LIVE_WORKER)

    # When
    report = run_rebalance(broker, db, settings)

    # Then
    assert report.resent == 0
    assert broker.messages_present("a", [cancelled]) == {cancelled: False}
    assert broker.messages_present("b", [running]) == {running: False}


def test_many_lost_messages_are_all_sent_again_in_one_run(db, broker, redis_client, settings):
    # Given
    task_ids = [create(db, "a", send=False) for _ in range(25)]

    # When
    report = run_rebalance(broker, db, settings)

    # Then
    assert report.resent == 25
    assert all(broker.messages_present("a", task_ids).values())
    assert run_rebalance(broker, db, settings).resent == 0


# -- recovering tasks of dead workers ----------------------------------------------------------


def test_a_task_held_by_a_dead_worker_is_recovered_when_liveness_is_trustworthy(
    db, broker, redis_client, settings
):
    # Given a running task whose worker has no heartbeat, and Redis that kept its data long
    task_id = create(db, "b", send=False)
    transitions.claim(db, task_id, DEAD_WORKER)
    liveness_known_for_long(redis_client, settings)

    # When
    report = run_rebalance(broker, db, settings)

    # Then it is queued again, sent, and the run says so
    assert (report.recovered, report.poisoned, report.dead_workers) == (1, 0, [DEAD_WORKER])
    assert report.liveness_checked is True
    task = Task.get_by_id(task_id)
    assert (task.status, task.worker, task.recoveries) == ("queued", None, 1)
    assert kinds(db, task_id) == ["created", "started", "recovered"]
    assert broker.messages_present("b", [task_id]) == {task_id: True}
    assert recorded_runs(db) == [(0, 1, 0, [DEAD_WORKER], {"liveness_checked": True})]


def test_a_task_of_a_type_only_other_workers_know_is_recovered_and_sent_to_its_queue(
    db, broker, redis_client, settings
):
    # Given a running task of a type this process never registered (a worker started with an
    # extra module, or a rolling deploy, knows it), held by a dead worker
    (task,) = transitions.create_tasks(db, [NewTask("known_elsewhere", {})])
    task_id = str(task.id)
    transitions.claim(db, task_id, DEAD_WORKER)
    liveness_known_for_long(redis_client, settings)

    # When
    report = run_rebalance(broker, db, settings)

    # Then it is queued again and its message waits in that type's queue, for that type's actor
    assert (report.recovered, report.dead_workers) == (1, [DEAD_WORKER])
    assert Task.get_by_id(task_id).status == "queued"
    assert broker.messages_present("known_elsewhere", [task_id]) == {task_id: True}
    stored = redis_client.hget(f"{broker.namespace}:known_elsewhere.msgs", task_id)
    assert json.loads(stored)["actor_name"] == "run_task_known_elsewhere"
    assert recorded_runs(db) == [(0, 1, 0, [DEAD_WORKER], {"liveness_checked": True})]


def test_nothing_is_recovered_while_liveness_is_not_trustworthy_yet(
    db, broker, redis_client, settings
):
    # Given a running task whose worker has no heartbeat, but Redis just lost its data
    task_id = create(db, "b", send=False)
    transitions.claim(db, task_id, DEAD_WORKER)
    redis_client.set(LIVENESS_MARKER_KEY, time.time())

    # When
    report = run_rebalance(broker, db, settings)

    # Then
    assert (report.recovered, report.liveness_checked) == (0, False)
    assert (Task.get_by_id(task_id).status, Task.get_by_id(task_id).worker) == (
        "running",
        DEAD_WORKER,
    )
    assert kinds(db, task_id) == ["created", "started"]
    assert recorded_runs(db) == [(0, 0, 0, [], {"liveness_checked": False})]


def test_nothing_is_recovered_on_the_first_look_after_redis_lost_everything(
    db, broker, redis_client, settings
):
    # Given a running task whose worker has no heartbeat, and no liveness marker at all
    task_id = create(db, "b", send=False)
    transitions.claim(db, task_id, DEAD_WORKER)

    # When
    report = run_rebalance(broker, db, settings)

    # Then
    assert report.liveness_checked is False
    assert Task.get_by_id(task_id).status == "running"


def test_a_task_held_by_a_live_worker_is_left_running(db, broker, redis_client, settings):
    # Given
    task_id = create(db, "b", send=False)
    transitions.claim(db, task_id, LIVE_WORKER)
    beat(redis_client, LIVE_WORKER)
    liveness_known_for_long(redis_client, settings)

    # When
    report = run_rebalance(broker, db, settings)

    # Then
    assert (report.recovered, report.dead_workers) == (0, [])
    assert Task.get_by_id(task_id).status == "running"


def test_a_task_that_crashed_its_worker_too_often_fails_as_poison(
    db, broker, redis_client, settings
):
    # Given a task that already crashed max_recoveries - 1 workers, running on a dead one
    task_id = create(db, "a", send=False)
    transitions.claim(db, task_id, DEAD_WORKER)
    db.execute_sql(
        "UPDATE tasks SET recoveries = %s WHERE id = %s", (settings.max_recoveries - 1, task_id)
    )
    liveness_known_for_long(redis_client, settings)

    # When
    report = run_rebalance(broker, db, settings)

    # Then
    assert (report.recovered, report.poisoned) == (0, 1)
    task = Task.get_by_id(task_id)
    assert task.status == "failed"
    assert "poison" in task.error
    assert broker.messages_present("a", [task_id]) == {task_id: False}
    assert recorded_runs(db)[0][:3] == (0, 0, 1)


def test_a_worker_dying_long_after_redis_started_is_recovered_at_the_next_run(
    db, broker, redis_client, settings
):
    # Given rebalances have run since longer than a heartbeat time-to-live, nobody dead
    fast = dataclasses.replace(settings, heartbeat_interval=0.2)
    run_rebalance(broker, db, fast)
    since = time.monotonic()
    while time.monotonic() - since <= fast.heartbeat_ttl:  # time passes; nothing to poll
        time.sleep(0.05)

    # When a worker dies holding a task, and the next run looks
    task_id = create(db, "b", send=False)
    transitions.claim(db, task_id, DEAD_WORKER)
    report = run_rebalance(broker, db, fast)

    # Then
    assert (report.recovered, report.liveness_checked) == (1, True)


# -- the run itself ----------------------------------------------------------------------------


def test_a_run_is_skipped_while_another_holds_the_lock(db, broker, redis_client, settings):
    # Given another process in the middle of a run, and a lost message
    task_id = create(db, "a", send=False)
    other = psycopg2.connect(**connection_parameters(settings.database_url))
    try:
        other.cursor().execute("SELECT pg_advisory_lock(%s)", (REBALANCE_LOCK_KEY,))

        # When
        report = run_rebalance(broker, db, settings)
    finally:
        other.close()

    # Then this run did nothing and recorded nothing
    assert report.skipped is True
    assert recorded_runs(db) == []
    assert kinds(db, task_id) == ["created"]
    # and the next one, once the lock is free, does the work
    assert run_rebalance(broker, db, settings).resent == 1


def test_consecutive_runs_in_one_process_do_not_block_each_other(db, broker, settings):
    # When
    reports = [run_rebalance(broker, db, settings) for _ in range(3)]

    # Then
    assert [r.skipped for r in reports] == [False, False, False]
    assert len(recorded_runs(db)) == 3
