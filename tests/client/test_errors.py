"""The error hierarchy for every status Restate uses, retry safety, timeouts, connection
errors and opt-in retries."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.client.support import eventually

from durably.client import (
    Client,
    ClientError,
    ConnectionError,
    IngressError,
    InvocationFailed,
    NotFound,
    RetryPolicy,
    Timeout,
)

SERVICES = ["BlockAndWaitWorkflow", "Counter", "Failing", "TestUtilsService"]

METADATA = {"kind": "validation", "field": "email"}


def key() -> str:
    return str(uuid.uuid4())


def test_unknown_service_and_handler_are_not_found(c: Any) -> None:
    with pytest.raises(NotFound) as exc:
        c.service("NoSuchService").call("greet", "x")
    assert exc.value.status == 404
    assert exc.value.source == "ingress"
    assert exc.value.retry_safe and not exc.value.transient
    with pytest.raises(NotFound):
        c.service("TestUtilsService").send("noSuchHandler", "x")
    with pytest.raises(NotFound):
        c.service("TestUtilsService").invocation("echo", idempotency_key=key()).output()


def test_bad_request_is_an_ingress_error(c: Any) -> None:
    # a handler without input refuses a body
    with pytest.raises(IngressError) as exc:
        c.object("Counter", key()).call("get", 1)
    assert exc.value.status == 400
    assert exc.value.source == "ingress"
    assert "input validation" in exc.value.message
    assert exc.value.retry_safe and not exc.value.retryable
    # an object handler called as a service
    with pytest.raises(IngressError) as exc:
        c.service("Counter").call("add", 1)
    assert exc.value.status == 400


def test_terminal_error_with_metadata(c: Any) -> None:
    failing = c.object("Failing", key())
    req = {"errorMessage": "bad email", "metadata": METADATA}
    with pytest.raises(InvocationFailed) as exc:
        failing.call("terminallyFailingCall", req)
    err = exc.value
    assert (err.status, err.code) == (500, 500)
    assert err.message == "bad email"
    assert err.metadata.items() >= METADATA.items()
    assert err.source == "invocation"
    assert err.invocation_id and err.invocation_id.startswith("inv_")
    # without an idempotency key a retry would run the handler again
    assert err.retry_safe is False


def test_terminal_error_with_idempotency_key_is_safe_to_retry(c: Any) -> None:
    failing = c.object("Failing", key())
    ik = key()
    req = {"errorMessage": "boom"}
    with pytest.raises(InvocationFailed) as first:
        failing.call("terminallyFailingCall", req, idempotency_key=ik)
    assert first.value.retry_safe is True
    # the stored failure answers the repeat and the lookups
    with pytest.raises(InvocationFailed) as again:
        failing.call("terminallyFailingCall", req, idempotency_key=ik)
    assert again.value.invocation_id == first.value.invocation_id
    with pytest.raises(InvocationFailed) as out:
        failing.invocation("terminallyFailingCall", idempotency_key=ik).output()
    assert out.value.message == "boom"


def test_terminal_error_propagated_through_a_call(c: Any) -> None:
    with pytest.raises(InvocationFailed) as exc:
        c.object("Failing", key()).call(
            "callTerminallyFailingCall", {"errorMessage": "deep", "metadata": METADATA}
        )
    assert exc.value.message == "deep"
    assert exc.value.metadata.items() >= METADATA.items()


def test_attach_timeout_leaves_the_invocation_running(c: Any) -> None:
    wf = c.workflow("BlockAndWaitWorkflow", key())
    wf.submit("x")
    with pytest.raises(Timeout) as exc:
        wf.attach(timeout=0.5)  # the client under test retries, but not its own deadline
    assert exc.value.retry_safe and exc.value.sent
    assert isinstance(exc.value, TimeoutError)

    def started() -> None:
        assert wf.call("getState", output=str) == "x"

    eventually(started)
    wf.call("unblock", "later")
    assert wf.attach(output=str) == "later"


def test_call_timeout_without_idempotency_key_is_not_safe(c: Any) -> None:
    wf = c.workflow("BlockAndWaitWorkflow", key())
    with pytest.raises(Timeout) as exc:
        wf.call("run", "x", timeout=0.5)
    # a workflow run is keyed by its id, but the client cannot know "run" is the run
    # handler: only an idempotency key (or submit/attach) makes it safe
    assert exc.value.retry_safe is False
    assert exc.value.sent


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused() -> None:
    port = _closed_port()
    with Client(f"http://127.0.0.1:{port}", admin_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(ConnectionError) as exc:
            client.service("Greeter").call("greet", "x")
    assert exc.value.sent is False
    assert exc.value.retry_safe and exc.value.retryable
    assert isinstance(exc.value, OSError)  # also the builtin ConnectionError


def test_connection_refused_is_retried_up_to_max_attempts() -> None:
    port = _closed_port()
    policy = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02)
    with Client(f"http://127.0.0.1:{port}", retry=policy) as client:
        with pytest.raises(ConnectionError):
            client.service("Greeter").call("greet", "x")


# ---------------------------------------------------------------- retries: a test double
# Restate answers 503/429 only under overload or while partitions move, which a test
# cannot provoke on demand: a tiny real HTTP server plays those answers instead.


class _Scripted(http.server.BaseHTTPRequestHandler):
    script: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        status, headers, body = type(self).script.pop(0)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[_Scripted]]]:
    handler = type("Handler", (_Scripted,), {"script": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _error(status: int, source: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"code": status, "message": message, "source": source}).encode()
    return status, {"content-type": "application/json", "x-restate-error-source": source}, body


def test_transient_ingress_errors_are_retried(scripted: tuple[str, type[_Scripted]]) -> None:
    url, handler = scripted
    handler.script = [
        _error(503, "ingress", "partition moving, safe to retry"),
        _error(429, "ingress", "overloaded"),
        (200, {"content-type": "application/json"}, b'"Hello!"'),
    ]
    policy = RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=0.02)
    with Client(url, retry=policy) as client:
        assert client.service("Greeter").call("greet", "x") == "Hello!"
    assert len(handler.seen) == 3


def test_without_retry_policy_the_first_error_is_raised(
    scripted: tuple[str, type[_Scripted]],
) -> None:
    url, handler = scripted
    handler.script = [_error(503, "ingress", "try again")]
    with Client(url) as client:
        with pytest.raises(IngressError) as exc:
            client.service("Greeter").call("greet", "x")
    assert exc.value.retryable
    assert len(handler.seen) == 1


def test_handler_failures_are_not_retried(scripted: tuple[str, type[_Scripted]]) -> None:
    url, handler = scripted
    handler.script = [_error(503, "invocation", "the handler said 503")]
    policy = RetryPolicy(max_attempts=5, initial_delay=0.01)
    with Client(url, retry=policy) as client:
        with pytest.raises(InvocationFailed) as exc:
            client.service("Greeter").call("greet", "x", idempotency_key="k")
    # safe (idempotency key) but a terminal failure does not change on retry
    assert exc.value.retry_safe and not exc.value.transient
    assert len(handler.seen) == 1


def test_client_error_is_the_common_base() -> None:
    for cls in (ConnectionError, Timeout, InvocationFailed, NotFound, IngressError):
        assert issubclass(cls, ClientError)
