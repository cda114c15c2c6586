"""``callboard``: submit, show, watch, list, cancel and retry tasks; see queues and workers.

Talks to the REST API at ``CALLBOARD_URL`` (default ``http://127.0.0.1:8080``) with the token in
``CALLBOARD_API_TOKEN``; ``--url`` and ``--token`` override them. Exits 0 on success, 1 when the
API answers an error (printed with its problem details) or a watched task does not succeed, and
2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TextIO

from cli import render
from cli.client import ApiClient, ApiError

DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds between polls of ``watch``.
DEFAULT_POLL_INTERVAL = 0.5
FINAL_STATUSES = ("succeeded", "failed", "cancelled")


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run one CLI command; return the process exit code."""
    args = _parser().parse_args(argv)
    client = ApiClient(args.url, args.token)
    try:
        return args.command(client, args, out)
    except ApiError as exc:
        print(f"callboard: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=out)
        return 130


def submit(client: ApiClient, args, out: TextIO) -> int:
    """Submit one task from flags or a JSON document."""
    body = _submission(args)
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    task = client.post("/tasks", body, headers=headers)
    if args.watch:
        print(task["id"], file=out)
        return _watch(client, task["id"], args.interval, out)
    print(render.task_summary(task) if args.verbose else task["id"], file=out)
    return 0


def show(client: ApiClient, args, out: TextIO) -> int:
    """Print one task, or its raw JSON with --json, and with --events its history."""
    task = client.get(f"/tasks/{args.task_id}")
    events = client.get(f"/tasks/{args.task_id}/events")["events"] if args.events else None
    if args.json:
        print(json.dumps({**task, **({"events": events} if events else {})}, indent=2), file=out)
        return 0
    print(render.task_summary(task), file=out)
    for event in events or []:
        print(f"  {event['at']}  {event['kind']:<14} {event['worker'] or ''}", file=out)
    return 0


def watch(client: ApiClient, args, out: TextIO) -> int:
    """Follow a task with a live progress bar until it ends; print its result."""
    return _watch(client, args.task_id, args.interval, out)


def list_tasks(client: ApiClient, args, out: TextIO) -> int:
    """List tasks, newest first, with filters."""
    page = client.get("/tasks", {"status": args.status, "type": args.type, "limit": args.limit})
    print(render.task_table(page["items"]), file=out)
    if page["next"]:
        print(f"(more: --limit or {page['next']})", file=out)
    return 0


def stats(client: ApiClient, args, out: TextIO) -> int:
    """Print queues, task counts and workers."""
    print(render.stats_text(client.get("/stats")), file=out)
    return 0


def cancel(client: ApiClient, args, out: TextIO) -> int:
    """Cancel a task (a running one stops at its next step)."""
    task = client.post(f"/tasks/{args.task_id}/cancel")
    note = " (stops at its next step)" if task["status"] == "running" else ""
    print(f"{task['id']} {task['status']}{note}", file=out)
    return 0


def retry(client: ApiClient, args, out: TextIO) -> int:
    """Queue a failed or cancelled task again."""
    task = client.post(f"/tasks/{args.task_id}/retry")
    print(f"{task['id']} {task['status']}", file=out)
    return 0


def _watch(client: ApiClient, task_id: str, interval: float, out: TextIO) -> int:
    live = out.isatty()
    last = None
    while True:
        task = client.get(f"/tasks/{task_id}")
        line = render.progress_line(task)
        if line != last:
            render.show_progress(out, task, live=live)
            last = line
        if task["status"] in FINAL_STATUSES:
            break
        time.sleep(interval)
    if live:
        print(file=out)
    if task["result"] is not None:
        print(json.dumps(task["result"], sort_keys=True), file=out)
    if task["error"]:
        print(f"error: {task['error']}", file=out)
    return 0 if task["status"] == "succeeded" else 1


def _submission(args) -> dict:
    if args.json_body:
        try:
            body = json.loads(args.json_body)
        except ValueError as exc:
            raise SystemExit(f"callboard: error: --json is not valid JSON: {exc}") from None
    elif args.type == "a":
        body = {"type": "a", "payload": {"text": args.text, "rounds": args.rounds}}
    elif args.type == "b":
        body = {"type": "b", "payload": {"duration_ms": args.duration_ms, "steps": args.steps}}
    else:
        raise SystemExit("callboard: error: give a type (a or b) or --json")
    if args.delay_ms is not None:
        body["delay_ms"] = args.delay_ms
    if args.run_at is not None:
        body["run_at"] = args.run_at
    return body


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callboard", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CALLBOARD_URL", DEFAULT_URL))
    parser.add_argument("--token", default=os.environ.get("CALLBOARD_API_TOKEN"))
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    p = commands.add_parser("submit", help="submit a task")
    p.add_argument("type", nargs="?", choices=("a", "b"), help="task type (or use --json)")
    p.add_argument("--text", default="hello", help="A: text to hash")
    p.add_argument("--rounds", type=int, default=1, help="A: SHA-256 rounds")
    p.add_argument("--duration-ms", type=int, default=1000, help="B: total wait in ms")
    p.add_argument("--steps", type=int, default=10, help="B: number of steps")
    p.add_argument("--json", dest="json_body", help="a whole submission, e.g. '{\"type\": ...}'")
    p.add_argument("--delay-ms", type=int, help="start after this many ms")
    p.add_argument("--run-at", help="start at this time (RFC 3339)")
    p.add_argument("--idempotency-key", help="replays with this key return the same task")
    p.add_argument("--watch", action="store_true", help="then follow it like `watch`")
    p.add_argument("--interval", type=float, default=DEFAULT_POLL_INTERVAL)
    p.add_argument("-v", "--verbose", action="store_true", help="print the whole task")
    p.set_defaults(command=submit)

    p = commands.add_parser("show", help="show a task")
    p.add_argument("task_id")
    p.add_argument("--events", action="store_true", help="with its history")
    p.add_argument("--json", action="store_true", help="raw JSON")
    p.set_defaults(command=show)

    p = commands.add_parser("watch", help="follow a task with a progress bar until it ends")
    p.add_argument("task_id")
    p.add_argument("--interval", type=float, default=DEFAULT_POLL_INTERVAL)
    p.set_defaults(command=watch)

    p = commands.add_parser("ls", help="list tasks, newest first")
    p.add_argument("--status", choices=("queued", "running", *FINAL_STATUSES))
    p.add_argument("--type")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(command=list_tasks)

    p = commands.add_parser("stats", help="queues, task counts and workers")
    p.set_defaults(command=stats)

    for name, command in (("cancel", cancel), ("retry", retry)):
        p = commands.add_parser(name, help=f"{name} a task")
        p.add_argument("task_id")
        p.set_defaults(command=command)
    return parser


if __name__ == "__main__":
    sys.exit(main())
