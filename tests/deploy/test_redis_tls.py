"""``rediss://`` with the platform's self-signed certificate, and ``postgres://`` URLs.

Heroku Redis serves TLS with a self-signed certificate, which a verifying client rejects; with
``CALLBOARD_REDIS_TLS_VERIFY=false`` Callboard keeps the connection encrypted but accepts that
certificate. These tests run a TLS-only ``redis-server`` of their own, with a certificate made by
``openssl`` for the test, and talk to it the way the web and worker processes do.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest
import redis

from actors.broker import broker as process_broker
from actors.broker import redis_client
from actors.heartbeat import KEY_PREFIX
from actors.ledger_broker import LedgerRedisBroker
from actors.sending import send_tasks
from models.db import connection_parameters
from settings import settings_from
from tests.e2e.api import submit, wait_all_final
from tests.e2e.stack import wait_until
from tests.faults.servers import RedisServer

#: Seconds ``openssl`` may take to make the certificate (an EC key takes milliseconds).
OPENSSL_TIMEOUT = 30
#: Seconds ``apt-get install openssl`` may take, when it has to run.
APT_TIMEOUT = 300


def openssl_program() -> str:
    """The ``openssl`` CLI; installed with apt-get when missing and we are root on Debian."""
    found = shutil.which("openssl")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "openssl"]
        result = subprocess.run(
            install, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT
        )
        if result.returncode != 0:  # perhaps no package lists yet
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=APT_TIMEOUT)
            result = subprocess.run(
                install, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT
            )
        found = shutil.which("openssl")
        if found:
            return found
        pytest.fail(
            "The Redis TLS tests need the openssl CLI, and `apt-get install -y openssl` failed:\n"
            + result.stderr[-2000:],
            pytrace=False,
        )
    pytest.fail(
        "The Redis TLS tests need the openssl CLI to make a self-signed certificate; install it "
        "(Debian: apt-get install -y openssl).",
        pytrace=False,
    )


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Make a self-signed certificate and its unencrypted key in ``directory``; return both."""
    cert, key = directory / "redis.crt", directory / "redis.key"
    result = subprocess.run(
        [
            openssl_program(),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=callboard-test-redis",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=OPENSSL_TIMEOUT,
    )
    if result.returncode != 0:
        pytest.fail(f"openssl could not make a self-signed certificate:\n{result.stderr}")
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A TLS-only ``redis-server`` with a self-signed certificate, for this module's tests."""
    if not shutil.which("redis-server"):
        pytest.fail("The Redis TLS tests need redis-server on PATH.", pytrace=False)
    root = tmp_path_factory.mktemp("redis-tls")
    cert, key = self_signed_certificate(root)
    server = RedisServer(root / "redis", tls_cert_file=cert, tls_key_file=key)
    try:
        try:
            server.start()
        except (RuntimeError, AssertionError) as exc:
            pytest.fail(
                "redis-server would not serve TLS; it must be built with TLS support "
                f"(Debian's redis-server 7 is): {exc}",
                pytrace=False,
            )
        yield server
    finally:
        server.kill()


@pytest.fixture
def tls_redis(tls_server) -> RedisServer:
    """The module's TLS ``redis-server``, emptied before the test."""
    admin = tls_server.client()
    try:
        admin.flushall()
    finally:
        admin.close()
    return tls_server


def tls_redis_keys(server: RedisServer, pattern: str) -> list[bytes]:
    """The keys of ``server`` that match ``pattern``."""
    client = server.client()
    try:
        return client.keys(pattern)
    finally:
        client.close()


@pytest.fixture
def unverified_client(tls_redis):
    """Callboard's Redis client on the TLS server, not verifying its certificate."""
    client = redis_client(tls_redis.url, verify_tls=False)
    yield client
    client.close()


# -- the Redis client ------------------------------------------------------------------------


def test_an_unverified_tls_client_talks_to_a_redis_with_a_self_signed_certificate(
    tls_redis, unverified_client
):
    # Given a rediss:// URL
    assert tls_redis.url.startswith("rediss://")

    # When / Then
    assert unverified_client.ping() is True
    assert unverified_client.set("callboard:tls-check", "é ✓") is True
    assert unverified_client.get("callboard:tls-check") == "é ✓".encode()


def test_a_verifying_tls_client_rejects_the_self_signed_certificate(tls_redis):
    # Given the same URL, but the certificate verified (the default)
    client = redis_client(tls_redis.url, verify_tls=True)

    # When
    try:
        with pytest.raises(redis.ConnectionError) as caught:
            client.ping()
    finally:
        client.close()

    # Then it is the certificate that is refused, not the connection
    assert "certificate verify failed" in str(caught.value), caught.value
    cause = caught.value.__cause__ or caught.value.__context__
    assert isinstance(cause, ssl.SSLCertVerificationError), repr(cause)


def test_the_server_speaks_tls_only(tls_redis):
    # Given a plain-TCP client on the TLS port
    plain_url = tls_redis.url.replace("rediss://", "redis://", 1)
    client = redis.Redis.from_url(plain_url, socket_connect_timeout=2, socket_timeout=2)

    # When / Then: it gets no answer, so the tests above really went over TLS
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()


# -- the broker ------------------------------------------------------------------------------


def test_the_broker_sends_and_delivers_a_task_message_over_unverified_tls(unverified_client):
    # Given a broker on the TLS server, with Callboard's actors declared (no I/O)
    tls_broker = LedgerRedisBroker(client=unverified_client)
    for actor in process_broker.actors.values():
        tls_broker.declare_actor(actor)
    task_id = str(uuid.uuid4())

    # When a task's message is sent as the API sends it
    assert send_tasks(tls_broker, [(task_id, "a", None)]) == 1

    # Then Redis holds it under the task's id
    assert tls_broker.messages_present("a", [task_id]) == {task_id: True}
    assert tls_broker.queue_stats(["a"])["a"]["waiting"] == 1

    # And a consumer fetches and acks it over the same connection
    consumer = tls_broker.consume("a", prefetch=1, timeout=100)
    try:
        message = wait_until(lambda: next(consumer), timeout=5, interval=0, message="the message")
        assert message.message_id == task_id
        assert message.args == (task_id,)
        consumer.ack(message)
    finally:
        consumer.close()
    assert tls_broker.messages_present("a", [task_id]) == {task_id: False}


# -- settings --------------------------------------------------------------------------------


def test_redis_tls_verification_can_be_turned_off_and_is_on_by_default():
    url = "rediss://:secret@ec2-1-2-3-4.compute-1.amazonaws.com:25580"

    off = settings_from({"REDIS_URL": url, "CALLBOARD_REDIS_TLS_VERIFY": "false"})
    default = settings_from({"REDIS_URL": url})

    assert (off.redis_url, off.redis_tls_verify) == (url, False)
    assert (default.redis_url, default.redis_tls_verify) == (url, True)


def test_a_postgres_scheme_database_url_is_accepted_and_parsed():
    url = "postgres://postgres@127.0.0.1:5432/x"

    settings = settings_from({"DATABASE_URL": url})
    params = connection_parameters(settings.database_url)

    assert settings.database_url == url
    assert {k: params[k] for k in ("host", "port", "user", "database")} == {
        "host": "127.0.0.1",
        "port": 5432,
        "user": "postgres",
        "database": "x",
    }


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_web_and_worker_processes_run_a_task_over_unverified_tls(stack, tls_redis):
    # Given the web and one worker process on the TLS Redis, certificate unverified
    stack.start(
        ["web", "worker"],
        extra_env={
            "REDIS_URL": tls_redis.url,
            "CALLBOARD_REDIS_TLS_VERIFY": "false",
            "CALLBOARD_WORKER_PROCESSES": "1",
            "CALLBOARD_WORKER_THREADS": "2",
        },
    )
    stack.wait_http_ready()
    stack.wait_workers(1)
    # (the worker's heartbeat is in the TLS server: both processes really use it)
    assert tls_redis_keys(tls_redis, KEY_PREFIX + "*")

    # When an A task is submitted over HTTP
    task_id = submit(stack, "a", {"text": "over TLS", "rounds": 3})

    # Then the worker runs it to success
    body = wait_all_final(stack, [task_id], timeout=15)[task_id]
    assert body["status"] == "succeeded", body
    digest = b"over TLS"
    for _ in range(3):
        digest = hashlib.sha256(digest).digest()
    assert body["result"] == {"sha256": digest.hex(), "rounds": 3}
