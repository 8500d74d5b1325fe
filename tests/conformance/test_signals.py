"""Signals: a named signal resolved / rejected from another handler."""

from __future__ import annotations

from tests.support.harness import Env

SERVICES = ["VirtualObjectCommandInterpreter", "TestUtilsService"]

AWAIT_SIGNAL = {"commands": [{"type": "awaitOne", "command": {"type": "createSignal", "signalName": "mysignal"}}]}


def test_resolve(env: Env) -> None:
    inv_id, status = env.send("VirtualObjectCommandInterpreter", "interpretCommands", AWAIT_SIGNAL, key=env.new_key())
    assert status == "Accepted"
    env.call_json(
        "TestUtilsService", "resolveSignal",
        {"invocationId": inv_id, "signalName": "mysignal", "value": "hello"},
    )
    r = env.attach(inv_id)
    assert r.status_code == 200, r.text
    assert r.json() == "hello"


def test_reject(env: Env) -> None:
    inv_id, _ = env.send("VirtualObjectCommandInterpreter", "interpretCommands", AWAIT_SIGNAL, key=env.new_key())
    env.call_json(
        "TestUtilsService", "rejectSignal",
        {"invocationId": inv_id, "signalName": "mysignal", "reason": "boom"},
    )
    r = env.attach(inv_id)
    assert r.status_code >= 400, r.text
    assert "boom" in r.text
