"""GET /metrics, read with prometheus-client's parser and checked against the ledger and Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from dramatiq.message import Message
from falcon import testing

from actors.sending import send_tasks
from actors.worker_metrics import KEY_PREFIX, TOTALS_KEY, WorkerMetrics
from actors.worker_state import WorkerState
from models import reads, transitions
from models.tables import STATUSES, RebalanceRun
from models.transitions import NewTask
from settings import settings_from
from tests.e2e.api import submit, wait_all_final
from web.app import create_app

from .scrape import label_values, parse, total, value

WORKER = "host-1:101:aaaaaaaa"
PAYLOADS = {"a": {"text": "x", "rounds": 1}, "b": {"duration_ms": 10, "steps": 1}}


def scrape(client) -> dict:
    response = client.simulate_get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def create(db, task_type: str, count: int) -> list[uuid.UUID]:
    tasks = transitions.create_tasks(db, [NewTask(task_type, PAYLOADS[task_type])] * count)
    return [t.id for t in tasks]


def run(db, task_id: uuid.UUID, outcome: str | None) -> None:
    """Claim the task, then record ``outcome`` (or leave it running)."""
    held = transitions.claim(db, task_id, WORKER)
    if outcome is not None:
        assert transitions.finish(db, held, outcome, error="boom" if outcome == "failed" else None)


def test_task_gauges_equal_the_ledger_by_type_and_status(client, db):
    # Given a known set of tasks in every status
    a = create(db, "a", 7)
    b = create(db, "b", 4)
    run(db, a[0], "succeeded")
    run(db, a[1], "succeeded")
    run(db, a[2], "failed")
    run(db, a[3], None)  # running
    transitions.cancel(db, a[4])
    run(db, b[0], "cancelled")
    run(db, b[1], None)

    # When /metrics is scraped
    samples = scrape(client)

    # Then callboard_tasks gives each type and status the ledger's count, zeros included
    expected = {
        "a": {"succeeded": 2, "failed": 1, "running": 1, "cancelled": 1, "queued": 2},
        "b": {"cancelled": 1, "running": 1, "queued": 2},
    }
    counts = reads.task_counts()
    for task_type in ("a", "b"):
        for status in STATUSES:
            exposed = value(samples, "callboard_tasks", type=task_type, status=status)
            assert exposed == expected[task_type].get(status, 0), (task_type, status)
            assert exposed == counts.get(task_type, {}).get(status, 0)
    assert total(samples, "callboard_tasks") == 11
    assert value(samples, "callboard_metrics_source_up", source="ledger") == 1
    assert value(samples, "callboard_metrics_source_up", source="redis") == 1


def test_queue_depth_gauges_equal_the_brokers_queue_stats(client, db, broker):
    # Given messages waiting on queue a, and a delayed one on queue b
    a = create(db, "a", 3)
    b = create(db, "b", 2)
    later = datetime.now(UTC) + timedelta(hours=1)
    send_tasks(broker, [(t, "a", None) for t in a] + [(b[0], "b", later)])

    # When /metrics is scraped
    samples = scrape(client)

    # Then each queue's depth by state is what the broker reports
    stats = broker.queue_stats(["a", "b", "rebalance"])
    assert stats["a"]["waiting"] == 3 and stats["b"]["delayed"] == 1
    for queue, states in stats.items():
        for state, count in states.items():
            assert value(samples, "callboard_queue_messages", queue=queue, state=state) == count


def test_the_latest_rebalance_run_is_exposed(client, db):
    # Given no run yet, then two recorded runs
    assert not value(scrape(client), "callboard_rebalance_last_run_timestamp_seconds")
    latest = datetime(2026, 11, 27, 23, 0, 10, tzinfo=UTC)
    RebalanceRun.create(started_at=latest - timedelta(seconds=10), duration_ms=1.0)
    RebalanceRun.create(started_at=latest, duration_ms=12.5)

    # When /metrics is scraped, then the latest run's start and duration are there
    samples = scrape(client)
    assert value(samples, "callboard_rebalance_last_run_timestamp_seconds") == latest.timestamp()
    assert value(samples, "callboard_rebalance_last_run_duration_seconds") == 0.0125


def test_http_requests_are_counted_by_route_template_method_and_status(client, db):
    # Given answered requests: two 404s for tasks, a list, unknown paths, a 401, a docs asset
    for _ in range(2):
        client.simulate_get(f"/tasks/{uuid.uuid4()}")
    client.simulate_get("/tasks")
    client.simulate_get("/no/such/route")
    client.simulate_get("/docs/assets/no-such-file.css")
    assert client.simulate_get("/docs/assets/swagger-ui.css").status_code == 200
    client.simulate_get("/tasks", headers={"Authorization": "Bearer wrong-token-wrong-token"})

    # When /metrics is scraped
    samples = scrape(client)

    # Then they are counted under the route template, never the raw path
    def requests(route, status, method="GET"):
        labels = {"route": route, "method": method, "status": status}
        return value(samples, "callboard_http_requests_total", **labels)

    assert requests("/tasks/{task_id}", "404") == 2
    assert requests("/tasks", "200") == 1
    assert requests("/tasks", "401") == 1  # answered before routing, still its route
    assert requests("unmatched", "404") == 2
    assert requests("static", "200") == 1
    routes = label_values(samples, "callboard_http_requests_total", "route")
    # (this scrape is not counted yet)
    assert routes == {"/tasks/{task_id}", "/tasks", "unmatched", "static"}
    # ... with a latency histogram per route and method
    histogram = "callboard_http_request_duration_seconds"
    labels = {"route": "/tasks/{task_id}", "method": "GET"}
    assert value(samples, f"{histogram}_count", **labels) == 2
    assert value(samples, f"{histogram}_bucket", le="+Inf", **labels) == 2
    assert value(samples, f"{histogram}_sum", **labels) > 0

    # And the scrape itself is counted by the next one
    assert requests("/metrics", "200") is None
    samples = scrape(client)
    assert requests("/metrics", "200") == 1


def test_metrics_need_the_api_token(client, db):
    response = client.simulate_get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 401


def test_worker_counters_published_to_redis_are_exposed_summed_and_per_process(
    client, redis_client
):
    # Given two worker processes that processed messages and published their counts
    first, second = (_worker_metrics(redis_client) for _ in range(2))
    _process(first, "a", count=3)
    _process(first, "b", count=1, exception=RuntimeError("PostgreSQL went away"))
    _process(second, "a", count=2)
    _process(second, "rebalance", count=1, skipped=True)
    _start(second, "b")  # still in flight
    assert first.publish() and second.publish()

    # When /metrics is scraped
    samples = scrape(client)

    # Then the deployment's counts are the sums, by type and outcome
    messages = "callboard_worker_messages_total"
    assert value(samples, messages, type="a", outcome="done") == 5
    assert value(samples, messages, type="b", outcome="error") == 1
    assert value(samples, messages, type="b", outcome="done") == 0
    assert value(samples, messages, type="rebalance", outcome="skipped") == 1
    durations = "callboard_worker_message_duration_seconds"
    assert value(samples, f"{durations}_count", type="a") == 5
    assert value(samples, f"{durations}_bucket", type="a", le="+Inf") == 5
    assert value(samples, "callboard_worker_messages_in_flight", type="b") == 1
    # ... and each live process has its own series
    per_process = "callboard_worker_process_messages_total"
    worker = first.state.worker_id
    assert value(samples, per_process, worker=worker, type="a", outcome="done") == 3
    assert total(samples, per_process, type="a", outcome="done") == 5
    in_flight = "callboard_worker_process_messages_in_flight"
    assert value(samples, in_flight, worker=second.state.worker_id, type="b") == 1

    # When the first process stops cleanly
    first.after_worker_shutdown(None, None)
    samples = scrape(client)

    # Then its own series are gone, and the deployment's counts keep what it did
    assert label_values(samples, per_process, "worker") == {second.state.worker_id}
    assert value(samples, messages, type="a", outcome="done") == 5
    assert redis_client.exists(TOTALS_KEY)
    assert not redis_client.exists(KEY_PREFIX + worker)


def test_worker_counts_not_published_while_redis_is_down_are_published_once_it_is_back(
    client, redis_client
):
    # Given a worker process whose Redis is unreachable while it processes messages
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    unreachable = Redis(port=1, retry=Retry(NoBackoff(), 0))
    metrics = WorkerMetrics(WorkerState(), unreachable, interval=60, ttl=60)
    _process(metrics, "a", count=2)
    assert not metrics.publish()
    _process(metrics, "a", count=1)

    # When Redis is reachable again
    metrics.client = redis_client
    assert metrics.publish()

    # Then every message is counted, once
    samples = scrape(client)
    assert value(samples, "callboard_worker_messages_total", type="a", outcome="done") == 3
    assert value(samples, "callboard_worker_message_duration_seconds_count", type="a") == 3
    assert metrics.publish()
    assert value(scrape(client), "callboard_worker_messages_total", type="a", outcome="done") == 3


def test_a_source_that_is_down_is_reported_and_the_rest_is_still_exposed(db):
    # Given an app whose Redis is unreachable
    from actors.broker import make_broker

    token = "a-token-of-this-test-only"
    settings = settings_from({"REDIS_URL": "redis://127.0.0.1:1/0", "CALLBOARD_API_TOKEN": token})
    create(db, "a", 2)
    client = testing.TestClient(create_app(settings, make_broker(settings)))

    # When /metrics is scraped
    samples = scrape_with(client, {"Authorization": f"Bearer {token}"})

    # Then the ledger's part is there and Redis's part is marked down
    assert value(samples, "callboard_tasks", type="a", status="queued") == 2
    assert value(samples, "callboard_metrics_source_up", source="redis") == 0
    assert value(samples, "callboard_metrics_source_up", source="ledger") == 1
    assert not label_values(samples, "callboard_queue_messages", "queue")


def scrape_with(client, headers: dict) -> dict:
    response = client.simulate_get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return parse(response.text)


def _worker_metrics(redis_client) -> WorkerMetrics:
    return WorkerMetrics(WorkerState(), redis_client, interval=60, ttl=60)


def _message(queue: str) -> Message:
    return Message(queue_name=queue, actor_name=f"run_task_{queue}", args=(), kwargs={}, options={})


def _start(metrics: WorkerMetrics, queue: str) -> Message:
    message = _message(queue)
    metrics.before_process_message(None, message)
    return message


def _process(metrics, queue, *, count, exception=None, skipped=False) -> None:
    for _ in range(count):
        message = _start(metrics, queue)
        if skipped:
            metrics.after_skip_message(None, message)
        else:
            metrics.after_process_message(None, message, exception=exception)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_worker_processes_counts_sum_to_the_tasks_run_by_type_and_outlive_the_workers(stack):
    # Given the web process and the Procfile's two worker processes
    stack.start(["web", "worker"])
    stack.wait_http_ready()
    workers = {w["worker_id"] for w in stack.wait_workers(2)}

    # When 8 A tasks and 5 B tasks run
    ids = [submit(stack, "a", {"text": f"n{i}", "rounds": 10 + i}) for i in range(8)]
    ids += [submit(stack, "b", {"duration_ms": 50, "steps": 2}) for _ in range(5)]
    finished = wait_all_final(stack, ids, timeout=45)
    assert {t["status"] for t in finished.values()} == {"succeeded"}

    # Then /metrics counts them, over the deployment and summed over the worker processes
    messages, per_process = (
        "callboard_worker_messages_total",
        "callboard_worker_process_messages_total",
    )
    expected = {"a": 8, "b": 5}

    def counted() -> dict | None:
        samples = parse(stack.get("/metrics").text)
        for task_type, count in expected.items():
            if value(samples, messages, type=task_type, outcome="done") != count:
                return None
            if total(samples, per_process, type=task_type, outcome="done") != count:
                return None
        return samples

    samples = stack.wait_until(counted, timeout=15, message="the workers' counts to be published")
    durations = "callboard_worker_message_duration_seconds"
    for task_type, count in expected.items():
        assert value(samples, f"{durations}_count", type=task_type) == count
        assert value(samples, "callboard_worker_messages_in_flight", type=task_type) == 0
        assert value(samples, "callboard_tasks", type=task_type, status="succeeded") == count
    assert value(samples, f"{durations}_sum", type="b") >= 5 * 0.05
    assert value(samples, "callboard_workers") == 2
    in_flight = "callboard_worker_process_messages_in_flight"
    assert label_values(samples, in_flight, "worker") == workers

    # When the workers stop cleanly
    assert stack.stop(["worker"]) == {"worker": 0}

    # Then their own series are gone and the deployment's counts remain
    samples = parse(stack.get("/metrics").text)
    assert not label_values(samples, in_flight, "worker")
    for task_type, count in expected.items():
        assert value(samples, messages, type=task_type, outcome="done") == count
    assert value(samples, "callboard_workers") == 0
