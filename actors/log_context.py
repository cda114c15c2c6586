"""Worker log lines in Callboard's format, naming the request and the task they are about.

Dramatiq configures logging in each worker process with its own format before our code runs;
at process boot this middleware gives that handler Callboard's format (``logging_setup``). While
a worker thread processes a message it sets the log context: the task id (a task message's id is
its task id) and the request id the web process put in the message's options, so every line the
runner, the handler and Dramatiq log for that message carries both.
"""

from __future__ import annotations

import threading
from contextvars import Token

from dramatiq import Middleware
from dramatiq.common import q_name
from dramatiq.message import Message

from actors.task_types import REGISTRY
from logging_setup import configure_logging, request_id_var, task_id_var, valid_request_id
from settings import Settings

#: The message option that carries the id of the HTTP request that sent it.
REQUEST_ID_OPTION = "request_id"


class LogContext(Middleware):
    """Formats a worker process's logs and names each message's task and request in them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()

    def after_process_boot(self, broker) -> None:
        configure_logging(self.settings, "worker")

    def before_process_message(self, broker, message: Message) -> None:
        task_id = message.message_id if q_name(message.queue_name) in REGISTRY else None
        request_id = valid_request_id(message.options.get(REQUEST_ID_OPTION))
        self._local.tokens = (request_id_var.set(request_id), task_id_var.set(task_id))

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        self._reset()

    def after_skip_message(self, broker, message) -> None:
        self._reset()

    def _reset(self) -> None:
        tokens: tuple[Token, Token] | None = getattr(self._local, "tokens", None)
        if tokens is None:
            return
        self._local.tokens = None
        request_token, task_token = tokens
        request_id_var.reset(request_token)
        task_id_var.reset(task_token)
