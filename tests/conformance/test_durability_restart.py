"""Durability across a crash of the server: SIGKILL while invocations sleep, then restart.

The server is killed while a running invocation waits in `ctx.sleep` (after its `ctx.run`
was journaled), while another waits in an object's inbox behind it, and while a delayed send
is pending; after a restart on the same data directory every one of them completes exactly
once, with the right result.
"""

from __future__ import annotations

import time

from tests.support.harness import new_key, poll

SERVICES = ["VirtualObjectCommandInterpreter", "Counter", "TestUtilsService"]


def _sleep_commands(ms: int) -> dict:
    return {
        "commands": [
            {"type": "awaitOne", "command": {"type": "runReturns", "value": "ran"}},
            {"type": "awaitOne", "command": {"type": "sleep", "timeoutMillis": ms}},
        ]
    }


def test_kill_during_sleep_then_restart_completes(env) -> None:
    key = new_key()
    counter = new_key()
    started = time.monotonic()
    inv_id, status = env.send(
        "VirtualObjectCommandInterpreter", "interpretCommands", _sleep_commands(3000), key=key
    )
    assert status == "Accepted"
    # an exclusive invocation queued behind the sleeping one on the same key
    queued, _ = env.send(
        "VirtualObjectCommandInterpreter",
        "interpretCommands",
        {"commands": [{"type": "awaitOne", "command": {"type": "runReturns", "value": "after"}}]},
        key=key,
    )
    delayed, _ = env.send("Counter", "add", 5, key=counter, delay="2s")

    # the first invocation has journaled its run and is now sleeping
    def ran() -> None:
        r = env.call(
            "VirtualObjectCommandInterpreter", "getResults", key=key, idem=False, timeout=5
        )
        assert r.status_code == 200 and r.json() == ["ran"], r.text

    poll(ran, timeout=10)
    env.server.restart(graceful=False)

    r = env.attach(inv_id, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == "sleep"
    assert time.monotonic() - started >= 3.0
    r = env.attach(queued, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == "after"
    results = env.call_json("VirtualObjectCommandInterpreter", "getResults", key=key, idem=False)
    # "ran" once (the run was journaled before the crash, not executed again), then the
    # sleep's result, then the queued invocation's run
    assert results == ["ran", "sleep", "after"]

    r = env.attach(delayed, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"oldValue": 0, "newValue": 5}
    assert env.call_json("Counter", "get", key=counter, idem=False) == 5


def test_graceful_stop_then_restart_keeps_state_and_idempotency(env) -> None:
    key = new_key()
    ik = new_key()
    first = env.call("Counter", "add", 1, key=key, idem=ik)
    assert first.status_code == 200 and first.json() == {"oldValue": 0, "newValue": 1}
    env.server.restart(graceful=True)
    # same idempotency key after the restart: the stored response, no second add
    again = env.call("Counter", "add", 1, key=key, idem=ik, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json() == {"oldValue": 0, "newValue": 1}
    assert again.headers["x-restate-id"] == first.headers["x-restate-id"]
    assert env.call_json("Counter", "get", key=key, idem=False) == 1
