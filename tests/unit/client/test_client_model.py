"""``durably.client``'s I/O-free parts: delay formatting, time parsing, error mapping and
the converter used when pydantic is not installed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, TypedDict

import httpx
import pytest

from durably.client import (
    AlreadyInvoked,
    IngressError,
    InvocationFailed,
    NotFound,
    NotReady,
    OutputError,
    RetryPolicy,
    serde,
)
from durably.client import _model as m


def test_delay_is_milliseconds_with_a_unit() -> None:
    assert m.format_delay(dt.timedelta(seconds=1.5)) == "1500ms"
    assert m.format_delay(2) == "2000ms"
    assert m.format_delay(0.25) == "250ms"
    with pytest.raises(ValueError):
        m.format_delay(-1)


def test_execution_time_with_nanoseconds() -> None:
    t = m.parse_time("2026-11-22T02:28:00.636000000Z")
    assert t == dt.datetime(2026, 11, 22, 2, 28, 0, 636000, tzinfo=dt.UTC)
    assert m.parse_time(None) is None


def _response(status: int, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def _call(idempotent: bool = False, workflow: bool = False) -> m.Request:
    return m.call_request(
        "http://x", "S", "h", "in", key=None, send=False, idempotency_key="k" if idempotent else None,
        delay=None, headers=None, timeout=None, content_type=None, workflow=workflow,
    )


def test_error_mapping_by_source_header() -> None:
    failed = m.error_for(
        _response(418, {"code": 418, "message": "teapot", "metadata": {"a": "b"}},
                  **{"x-restate-error-source": "invocation", "x-restate-id": "inv_1"}),
        _call(),
    )
    assert isinstance(failed, InvocationFailed)
    assert (failed.code, failed.metadata, failed.invocation_id) == (418, {"a": "b"}, "inv_1")
    assert failed.retry_safe is False
    refused = m.error_for(
        _response(400, {"code": 400, "message": "bad"}, **{"x-restate-error-source": "ingress"}),
        _call(),
    )
    assert isinstance(refused, IngressError) and refused.retry_safe
    again = m.error_for(
        _response(409, {"code": 409, "message": "the workflow method was already invoked"},
                  **{"x-restate-error-source": "invocation"}),
        _call(workflow=True),
    )
    assert isinstance(again, AlreadyInvoked)
    cancelled = m.error_for(
        _response(409, {"code": 409, "message": "canceled"}, **{"x-restate-error-source": "invocation"}),
        _call(workflow=True),
    )
    assert isinstance(cancelled, InvocationFailed)


def test_error_mapping_without_source_header() -> None:
    # Restate before 1.7.4: an error that carries an invocation id is the invocation's
    old = m.error_for(_response(500, {"code": 500, "message": "x"}, **{"x-restate-id": "inv_1"}), _call(True))
    assert isinstance(old, InvocationFailed) and old.retry_safe
    assert isinstance(m.error_for(_response(404, {"message": "no"}), _call()), NotFound)
    overloaded = m.error_for(_response(429, {"message": "slow down"}), _call())
    assert isinstance(overloaded, IngressError) and overloaded.retryable
    gateway = m.error_for(_response(502, {"message": "bad gateway"}), _call())
    assert isinstance(gateway, IngressError) and not gateway.retry_safe
    ref = m.InvocationRef.by_id("inv_1")
    assert isinstance(m.error_for(_response(470, {}), m.attach_request("http://x", ref, "output")), NotReady)


def test_retry_policy_backs_off_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=1.0, factor=2.0, max_delay=10, jitter=0)
    err = m.error_for(_response(503, {"message": "later"}, **{"retry-after": "7"}), _call())
    assert err is not None
    assert policy.next_delay(err, 1) == 7.0
    err.headers.clear()
    assert policy.next_delay(err, 2) == 2.0
    assert policy.next_delay(err, 3) is None


def test_idempotency_keys_needing_escapes_use_the_body_form() -> None:
    plain = m.attach_request("http://x", m.InvocationRef.by_idempotency_key("S", "h", "k-1", "a b"), "attach")
    assert (plain.method, plain.url) == ("GET", "http://x/restate/invocation/S/a%20b/h/k-1/attach")
    odd = m.attach_request("http://x", m.InvocationRef.by_idempotency_key("S", "h", "k 1"), "output")
    assert (odd.method, odd.url) == ("POST", "http://x/restate/output")
    assert json.loads(odd.content or b"") == {
        "target": "idempotentInvocation", "service": "S", "handler": "h", "idempotencyKey": "k 1",
    }


@dataclasses.dataclass
class Inner:
    n: int


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    tags: list[str]
    note: str | None = None


class TD(TypedDict):
    a: int


def test_converter_without_pydantic() -> None:
    assert serde._convert({"name": "x", "inner": {"n": 1}, "tags": ["t"]}, Outer) == Outer(
        "x", Inner(1), ["t"]
    )
    assert serde._convert({"a": 1}, TD) == {"a": 1}
    assert serde._convert(1, float) == 1.0
    assert serde._convert(None, int | None) is None
    for data, output in [(True, int), ("1", int), ([1], dict), ({"inner": {}}, Outer)]:
        with pytest.raises(OutputError):
            serde._convert(data, output)


def test_encode_distinguishes_no_input_from_null() -> None:
    assert serde.encode(serde.NO_INPUT) == (None, None)
    assert serde.encode(None) == (b"null", "application/json")
    assert serde.encode(b"\x00") == (b"\x00", "application/octet-stream")
    assert serde.encode(Inner(2)) == (b'{"n":2}', "application/json")


def test_decode_by_content_type() -> None:
    assert serde.decode(b"", None, None) is None
    assert serde.decode(b"\x01", "application/octet-stream", None) == b"\x01"
    assert serde.decode(b"hi", "text/plain", str) == "hi"
    assert serde.decode(b'{"n": 3}', "application/json", Inner) == Inner(3)


def test_retry_policy_does_not_retry_the_callers_own_deadline() -> None:
    from durably.client import Timeout

    policy = RetryPolicy(max_attempts=3, jitter=0)
    assert policy.next_delay(Timeout("read", retry_safe=True, sent=True), 1) is None
    assert policy.next_delay(Timeout("connect", retry_safe=True, sent=False), 1) == 0.1


def test_serde_without_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serde, "HAVE_PYDANTIC", False)
    assert serde.encode(Outer("x", Inner(1), ["a"])) == (
        b'{"name":"x","inner":{"n":1},"tags":["a"],"note":null}', "application/json"
    )
    body = b'{"name": "x", "inner": {"n": 1}, "tags": ["a"]}'
    assert serde.decode(body, "application/json", Outer) == Outer("x", Inner(1), ["a"])
    assert serde.decode(b"1", "application/json", int) == 1
    assert serde.decode(b"", None, int | None) is None
    with pytest.raises(OutputError):
        serde.decode(b'"x"', "application/json", int)
