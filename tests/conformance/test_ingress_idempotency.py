"""Removed SDK-suite Ingress tests: idempotency keys on ingress calls and sends, retention
expiry, attach/output by idempotency key (``RESTATE_WORKER__CLEANUP_INTERVAL=1s``)."""

from __future__ import annotations

import pytest
from tests.support.harness import Env

SERVICES = ["Counter", "Proxy", "TestUtilsService", "VirtualObjectCommandInterpreter"]
SERVER_OPTIONS = {"cleanup_interval": "1s"}

VO = "VirtualObjectCommandInterpreter"


def _counter_is(env: Env, key: str, expected: int) -> None:
    def check() -> None:
        assert env.call_json("Counter", "get", key=key, idem=False) == expected

    env.poll(check)


@pytest.mark.timeout(60)
def test_idempotent_invoke_virtual_object(env: Env) -> None:
    r = env.patch_service("Counter", idempotency_retention="3s")
    assert r.status_code == 200, r.text
    try:
        key = env.new_key()
        ik = env.new_key()
        assert env.call_json("Counter", "add", 2, key=key, idem=ik) == {"oldValue": 0, "newValue": 2}
        # same key: the stored response, the handler does not run again
        assert env.call_json("Counter", "add", 2, key=key, idem=ik) == {"oldValue": 0, "newValue": 2}

        # once the retention (3 s) has expired and been cleaned up, the key is new again
        def expired() -> None:
            assert env.call_json("Counter", "add", 2, key=key, idem=ik) == {"oldValue": 2, "newValue": 4}

        env.poll(expired, timeout=20, interval=0.5)
        _counter_is(env, key, 4)
    finally:
        env.patch_service("Counter", idempotency_retention="1d")


def test_idempotent_invoke_service(env: Env) -> None:
    key = env.new_key()
    ik = env.new_key()
    req = env.proxy_request("Counter", "add", 2, key=key)
    first = env.call_json("Proxy", "oneWayCall", req, idem=ik)
    second = env.call_json("Proxy", "oneWayCall", req, idem=ik)
    assert first == second and first.startswith("inv_")
    _counter_is(env, key, 2)
    assert env.call_json("Counter", "add", 2, key=key) == {"oldValue": 2, "newValue": 4}


def test_idempotent_invoke_send(env: Env) -> None:
    key = env.new_key()
    ik = env.new_key()
    inv_id, status = env.send("Counter", "add", 2, key=key, idem=ik)
    assert status == "Accepted"
    assert inv_id.startswith("inv")
    inv_id2, status2 = env.send("Counter", "add", 2, key=key, idem=ik)
    assert status2 == "PreviouslyAccepted"
    assert inv_id2 == inv_id
    _counter_is(env, key, 2)
    assert env.call_json("Counter", "add", 2, key=key) == {"oldValue": 2, "newValue": 4}


def test_idempotent_send_then_attach_with_idempotency_key(env: Env) -> None:
    key = env.new_key()
    ik = env.new_key()
    awakeable_key = env.new_key()
    body = {"commands": [{"type": "awaitOne", "command": {"type": "createAwakeable", "awakeableKey": awakeable_key}}]}
    inv_id, status = env.send(VO, "interpretCommands", body, key=key, idem=ik)
    assert status == "Accepted"

    attached = env.background(env.attach_idem, VO, "interpretCommands", ik, key=key)
    r = env.output_idem(VO, "interpretCommands", ik, key=key)
    assert r.status_code == 470, r.text
    assert not attached.done()

    def has_awakeable() -> None:
        assert env.call_json(VO, "hasAwakeable", awakeable_key, key=key, idem=False) is True

    env.poll(has_awakeable)
    env.call_json(VO, "resolveAwakeable", {"awakeableKey": awakeable_key, "value": "response"}, key=key)

    r = attached.result(timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == "response"
    r = env.output_idem(VO, "interpretCommands", ik, key=key)
    assert r.status_code == 200, r.text
    assert r.json() == "response"


def test_idempotent_send_then_attach_by_invocation_id(env: Env) -> None:
    """The suite's disabled ``idempotentSendThenAttach``: attach/output by invocation id."""
    key = env.new_key()
    awakeable_key = env.new_key()
    body = {"commands": [{"type": "awaitOne", "command": {"type": "createAwakeable", "awakeableKey": awakeable_key}}]}
    inv_id, _ = env.send(VO, "interpretCommands", body, key=key)

    attached = env.background(env.attach, inv_id)
    r = env.output(inv_id)
    assert r.status_code == 470, r.text

    def has_awakeable() -> None:
        assert env.call_json(VO, "hasAwakeable", awakeable_key, key=key, idem=False) is True

    env.poll(has_awakeable)
    assert not attached.done()
    env.call_json(VO, "resolveAwakeable", {"awakeableKey": awakeable_key, "value": "response"}, key=key)
    r = attached.result(timeout=30)
    assert r.status_code == 200 and r.json() == "response", r.text
    r = env.output(inv_id)
    assert r.status_code == 200 and r.json() == "response", r.text


def test_repeated_idempotent_call_carries_idempotency_expires(env) -> None:
    """The stored response of a repeat (and an attach) says until when it is kept: about
    24 h (the default retention) after the first completion. The first answer has none."""
    import datetime as dt

    key, ik = env.new_key(), env.new_key()
    first = env.call("Counter", "add", 2, key=key, idem=ik)
    assert first.status_code == 200 and "idempotency-expires" not in first.headers
    for r in (env.call("Counter", "add", 2, key=key, idem=ik), env.attach_idem("Counter", "add", ik, key=key)):
        assert r.status_code == 200 and r.json() == {"oldValue": 0, "newValue": 2}, r.text
        expires = dt.datetime.fromisoformat(r.headers["idempotency-expires"])
        left = expires - dt.datetime.now(dt.UTC)
        assert dt.timedelta(hours=23) < left <= dt.timedelta(hours=24), left
