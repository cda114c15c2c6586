"""peewee models of the ledger's tables, used for reads; writes go through ``transitions``."""

from __future__ import annotations

from peewee import (
    BigAutoField,
    BooleanField,
    DateTimeField,
    DoubleField,
    IntegerField,
    Model,
    SmallIntegerField,
    TextField,
    UUIDField,
)
from playhouse.postgres_ext import BinaryJSONField

from models.db import database

#: Every status, in the order a task moves through them.
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
#: Statuses a task never leaves except by an explicit retry.
FINAL_STATUSES = ("succeeded", "failed", "cancelled")


class _Table(Model):
    class Meta:
        database = database


class Task(_Table):
    """One unit of work, recorded before any message for it exists."""

    id = UUIDField(primary_key=True)
    type = TextField()
    status = TextField()
    payload = BinaryJSONField()
    result = BinaryJSONField(null=True)
    error = TextField(null=True)
    progress = SmallIntegerField(default=0)
    attempts = IntegerField(default=0)
    recoveries = IntegerField(default=0)
    worker = TextField(null=True)
    cancel_requested = BooleanField(default=False)
    idempotency_key = TextField(null=True)
    request_hash = TextField(null=True)
    run_at = DateTimeField(null=True)
    created_at = DateTimeField()
    queued_at = DateTimeField()
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)

    class Meta:
        table_name = "tasks"


class TaskEvent(_Table):
    """One line of a task's history: a transition, with time, worker and detail."""

    id = BigAutoField()
    task_id = UUIDField()
    at = DateTimeField()
    kind = TextField()
    worker = TextField(null=True)
    detail = BinaryJSONField(default=dict)

    class Meta:
        table_name = "task_events"


class RebalanceRun(_Table):
    """What one run of the repair loop did."""

    id = BigAutoField()
    started_at = DateTimeField()
    duration_ms = DoubleField()
    resent = IntegerField(default=0)
    recovered = IntegerField(default=0)
    poisoned = IntegerField(default=0)
    dead_workers = BinaryJSONField(default=list)
    detail = BinaryJSONField(default=dict)

    class Meta:
        table_name = "rebalance_runs"
