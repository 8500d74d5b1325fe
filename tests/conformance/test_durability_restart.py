"""Durability across a crash of the server: SIGKILL while invocations sleep, then restart.

The server is killed while a running invocation waits in `ctx.sleep` (after its `ctx.run`
was journaled), while another waits in an object's inbox behind it, and while a delayed send
is pending; after a restart on the same data directory every one of them completes exactly
once, with the right result.
"""

from __future__ import annotations

import time

from tests.support.harness import new_key, poll

SERVICES = ["VirtualObjectCommandInterpreter", "Counter", "TestUtilsService", "BlockAndWaitWorkflow"]


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


def test_kill9_keeps_workflow_promise_delayed_send_and_idempotent_result(env) -> None:
    """A pending workflow promise, a delayed send and a completed idempotent call all survive
    SIGKILL + restart: the workflow finishes once its promise is resolved after the restart,
    the delayed send fires once, and the idempotent call answers its stored response."""
    wf_id = new_key()
    delayed_key = new_key()
    idem_key = new_key()
    ik = new_key()
    run_id, status = env.send("BlockAndWaitWorkflow", "run", "v", key=wf_id, idem=False)
    assert status == "Accepted"

    def waiting_on_promise() -> None:
        r = env.call("BlockAndWaitWorkflow", "getState", key=wf_id, idem=False, timeout=5)
        assert r.status_code == 200 and r.json() == "v", r.text

    poll(waiting_on_promise, timeout=10)
    delayed, _ = env.send("Counter", "add", 7, key=delayed_key, delay="3s")
    first = env.call("Counter", "add", 1, key=idem_key, idem=ik)
    assert first.status_code == 200 and first.json() == {"oldValue": 0, "newValue": 1}

    env.server.restart(graceful=False)

    again = env.call("Counter", "add", 1, key=idem_key, idem=ik, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json() == {"oldValue": 0, "newValue": 1}
    assert again.headers["x-restate-id"] == first.headers["x-restate-id"]
    assert env.call_json("Counter", "get", key=idem_key, idem=False) == 1

    r = env.workflow_output("BlockAndWaitWorkflow", wf_id)
    assert r.status_code == 470, r.text  # still waiting on its promise
    assert env.call("BlockAndWaitWorkflow", "unblock", "out", key=wf_id, idem=False).status_code == 200
    r = env.workflow_attach("BlockAndWaitWorkflow", wf_id)
    assert r.status_code == 200 and r.json() == "out", r.text
    assert env.attach(run_id).json() == "out"
    # the run happened once: a second submission is refused / previously accepted
    r = env.send_raw("BlockAndWaitWorkflow", "run", "w", key=wf_id, idem=False)
    assert r.status_code == 202 and r.json()["status"] == "PreviouslyAccepted", r.text

    r = env.attach(delayed, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"oldValue": 0, "newValue": 7}
    assert env.call_json("Counter", "get", key=delayed_key, idem=False) == 7
