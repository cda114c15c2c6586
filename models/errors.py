"""The domain's exception tree; ``web/`` maps each to an HTTP answer once."""


class ServiceError(Exception):
    """Base of every error Callboard reports to a client."""


class TaskNotFound(ServiceError):
    """No task has the given id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"No task has id {task_id!r}.")
        self.task_id = task_id


class InvalidTransition(ServiceError):
    """The task's current status does not allow the requested change."""

    def __init__(self, task_id: str, status: str, action: str) -> None:
        super().__init__(f"Task {task_id!r} is {status}: it cannot be {action}.")
        self.task_id = task_id
        self.status = status
        self.action = action


class IdempotencyConflict(ServiceError):
    """An idempotency key was reused with a different request."""

    def __init__(self, key: str, task_id: str) -> None:
        super().__init__(
            f"Idempotency key {key!r} was first used for task {task_id} with a different request."
        )
        self.key = key
        self.task_id = task_id
