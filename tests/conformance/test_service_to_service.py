"""ServiceToServiceCommunication: calls, one-way sends, idempotency keys on calls and sends
between services, delayed sends."""

from __future__ import annotations

import json
import time

import pytest
from tests.support.harness import Env, json_bytes

SERVICES = ["Proxy", "TestUtilsService", "Counter"]


def _counter_is(env: Env, key: str, expected: int, timeout: float = 10.0) -> None:
    def check() -> None:
        assert env.call_json("Counter", "get", key=key, idem=False) == expected

    env.poll(check, timeout=timeout)


def test_regular_call(env: Env) -> None:
    out = env.call_json("Proxy", "call", env.proxy_request("TestUtilsService", "uppercaseEcho", "ping"))
    assert out == json_bytes("PING") == [34, 80, 73, 78, 71, 34]


def test_one_way_call(env: Env) -> None:
    key = env.new_key()
    inv_id = env.call_json("Proxy", "oneWayCall", env.proxy_request("Counter", "add", 1, key=key))
    assert isinstance(inv_id, str) and inv_id.startswith("inv_")
    _counter_is(env, key, 1)


def test_one_way_call_with_idempotency_key(env: Env) -> None:
    key = env.new_key()
    ik = env.new_key()
    req = env.proxy_request("Counter", "add", 1, key=key, idempotency_key=ik)

    def send() -> str:
        r = env.call("Proxy", "oneWayCall", req, idem=False)
        assert 200 <= r.status_code < 300, r.text
        return r.json()

    inv_id = env.poll(send)
    assert inv_id.startswith("inv_")
    _counter_is(env, key, 1)
    r = env.output_idem("Counter", "add", ik, key=key)
    assert r.status_code == 200, r.text
    assert r.json() == {"oldValue": 0, "newValue": 1}


def test_call_with_idempotency_key(env: Env) -> None:
    key = env.new_key()
    ik = env.new_key()
    req = env.proxy_request("Counter", "add", 1, key=key, idempotency_key=ik)

    def call() -> list:
        r = env.call("Proxy", "call", req, idem=False)
        assert r.status_code == 200, r.text
        return r.json()

    out = env.poll(call)
    assert json.loads(bytes(out)) == {"oldValue": 0, "newValue": 1}
    _counter_is(env, key, 1)
    r = env.output_idem("Counter", "add", ik, key=key)
    assert r.status_code == 200, r.text
    assert r.json() == {"oldValue": 0, "newValue": 1}


@pytest.mark.timeout(60)
def test_one_way_call_with_delay(env: Env) -> None:
    key = env.new_key()
    start = time.monotonic()
    for _ in range(10):
        env.call_json("Proxy", "oneWayCall", env.proxy_request("Counter", "add", 1, key=key, delay_ms=5000))
    # The delays run before the invocations queue on the key: all ten land ~5 s later,
    # not 5 s apart.
    assert env.call_json("Counter", "get", key=key, idem=False) == 0
    _counter_is(env, key, 10, timeout=10)
    elapsed = time.monotonic() - start
    assert elapsed >= 5.0, elapsed
    assert elapsed < 30.0, elapsed
