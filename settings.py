"""Callboard's configuration: the one place that reads the environment.

Twelve-factor: every setting comes from an environment variable, with local defaults that make
``honcho start`` work in a fresh checkout. ``get_settings()`` reads them once into a frozen,
cached object and fails fast, naming the variable, when a value is malformed.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/callboard"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: The shortest API token accepted: anything shorter is guessable.
MIN_TOKEN_LENGTH = 16


class ConfigError(ValueError):
    """An environment variable is missing or malformed; the message names it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of Callboard; see the README's configuration table for their meaning."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    port: int = 8080
    log_level: str = "INFO"
    log_format: str = "plain"
    web_threads: int = 8
    web_shutdown_timeout: float = 10.0
    max_body_bytes: int = 1024 * 1024
    heartbeat_interval: float = 30.0
    max_recoveries: int = 3
    shutdown_timeout: float = 3.0
    rebalance_period: int = 10
    resend_grace: float = 5.0
    api_tokens: tuple[str, ...] = ()
    auth_disabled: bool = False
    redis_tls_verify: bool = True

    @property
    def heartbeat_ttl(self) -> float:
        """Seconds after its last beat that a worker counts as dead: three missed beats."""
        return 3 * self.heartbeat_interval


@functools.cache
def get_settings() -> Settings:
    """Return the process-wide settings, read from ``os.environ`` on first use."""
    return settings_from(os.environ)


def settings_from(env: Mapping[str, str]) -> Settings:
    """Build settings from a mapping of environment variables.

    Raises:
        ConfigError: a variable is present but malformed or out of range.
    """
    return Settings(
        database_url=_url(
            env, "DATABASE_URL", DEFAULT_DATABASE_URL, ("postgres://", "postgresql://")
        ),
        redis_url=_url(env, "REDIS_URL", DEFAULT_REDIS_URL, ("redis://", "rediss://", "unix://")),
        port=_number(env, "PORT", 8080, int, 1, 65535),
        log_level=_choice(env, "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_format=_choice(env, "LOG_FORMAT", "PLAIN", ("PLAIN", "JSON")).lower(),
        web_threads=_number(env, "CALLBOARD_WEB_THREADS", 8, int, 1, 256),
        web_shutdown_timeout=_number(env, "CALLBOARD_WEB_SHUTDOWN_TIMEOUT", 10.0, float, 0, 3600),
        max_body_bytes=_number(env, "CALLBOARD_MAX_BODY_BYTES", 1024 * 1024, int, 1024, 1 << 30),
        heartbeat_interval=_number(env, "CALLBOARD_HEARTBEAT_INTERVAL", 30.0, float, 0.5, 3600),
        max_recoveries=_number(env, "CALLBOARD_MAX_RECOVERIES", 3, int, 1, 1000),
        shutdown_timeout=_number(env, "CALLBOARD_SHUTDOWN_TIMEOUT", 3.0, float, 0, 3600),
        rebalance_period=_number(env, "CALLBOARD_REBALANCE_PERIOD", 10, int, 1, 3600),
        resend_grace=_number(env, "CALLBOARD_RESEND_GRACE", 5.0, float, 0, 3600),
        api_tokens=_tokens(env, "CALLBOARD_API_TOKEN"),
        auth_disabled=_flag(env, "CALLBOARD_AUTH_DISABLED"),
        redis_tls_verify=_flag(env, "CALLBOARD_REDIS_TLS_VERIFY", default=True),
    )


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or default
    if not value.startswith(schemes):
        raise ConfigError(f"{name}={value!r} must start with one of {', '.join(schemes)}")
    return value


def _number(env, name, default, kind, low, high):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be between {low} and {high}")
    return value


def _tokens(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    # Several comma-separated tokens are all valid at once, so a token can be rotated without
    # downtime: add the new one, move the clients, remove the old one.
    tokens = tuple(t.strip() for t in env.get(name, "").split(",") if t.strip())
    for token in tokens:
        if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
            raise ConfigError(
                f"{name} holds a token that is not {MIN_TOKEN_LENGTH}+ printable ASCII characters"
            )
    return tokens


def _flag(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{name}={raw!r} must be 1/true/yes or 0/false/no")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().upper() or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value
