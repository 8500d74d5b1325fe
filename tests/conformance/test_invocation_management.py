"""Operator actions on invocations beyond cancel/kill: deadlocked exclusive calls, pause and
resume, restart as new, purge journal. Status codes and messages are Restate 1.7's (these
tests pass against the real server too).

Where durably reports more than Restate (the deadlock it found), the test checks that
only against durably: `GET /invocations/{id}` is durably's own endpoint.
"""

from __future__ import annotations

import time

import httpx
from tests.support.harness import Env, new_key, poll

SERVICES = ["CallChain", "Stepper", "AlwaysFailing", "Counter", "BlockAndWaitWorkflow"]


def _patch(env: Env, inv_id: str, action: str, **params: str) -> httpx.Response:
    return env.client.patch(f"{env.admin}/invocations/{inv_id}/{action}", params=params)


def _status(env: Env, inv_id: str) -> str:
    if env.target == "restate":
        rows = env.query(f"SELECT status FROM sys_invocation WHERE id = '{inv_id}'")
        return str(rows[0]["status"]) if rows else "unknown"
    r = env.client.get(f"{env.admin}/invocations/{inv_id}")
    return str(r.json()["status"]) if r.status_code == 200 else "unknown"


def _wait_status(env: Env, inv_id: str, *statuses: str) -> None:
    def check() -> None:
        assert _status(env, inv_id) in statuses

    poll(check, timeout=15)


def _start_cycle(env: Env) -> tuple[str, str, str]:
    """CallChain a -> b -> a: the second call to `a` queues behind the first forever."""
    a, b = new_key(), new_key()
    root, _ = env.send("CallChain", "hop", [b, a], key=a, idem=False)
    r = env.output(root)
    assert r.status_code == 470, r.text
    return root, a, b


def _assert_cycle_reported(env: Env, root: str, a: str, b: str) -> None:
    if env.target != "durably":
        return

    def reported() -> None:
        view = env.client.get(f"{env.admin}/invocations/{root}").json()
        text = view["deadlock"]
        assert text and f"CallChain/{a}/hop" in text and f"CallChain/{b}/hop" in text
        assert "is queued behind" in text and root in text

    poll(reported, timeout=15)


def _assert_keys_free(env: Env, *keys: str) -> None:
    for key in keys:
        def free(key: str = key) -> None:
            r = env.call("CallChain", "hop", [], key=key, idem=False, timeout=5)
            assert r.status_code == 200 and r.json() == key, r.text

        poll(free, timeout=15)


def test_deadlock_blocks_until_kill(env: Env) -> None:
    root, a, b = _start_cycle(env)
    _assert_cycle_reported(env, root, a, b)
    time.sleep(0.5)
    assert env.output(root).status_code == 470  # still blocked: Restate's semantics
    r = _patch(env, root, "kill")
    assert r.status_code == 200, r.text
    r = env.attach(root, timeout=15)
    assert r.status_code == 409 and r.json()["message"] == "killed", r.text
    _assert_keys_free(env, a, b)
    if env.target == "durably":
        assert env.client.get(f"{env.admin}/invocations/{root}").json()["deadlock"] is None


def test_deadlock_cancel_unblocks_both(env: Env) -> None:
    root, a, b = _start_cycle(env)
    _assert_cycle_reported(env, root, a, b)
    r = _patch(env, root, "cancel")
    assert r.status_code in (200, 202), r.text
    r = env.attach(root, timeout=15)
    # the SDK fails the awaiting call with its own wording of the cancellation
    assert r.status_code == 409 and r.json()["message"] in ("canceled", "cancelled"), r.text
    _assert_keys_free(env, a, b)


def test_pause_and_resume_a_backing_off_invocation(env: Env) -> None:
    inv, _ = env.send("AlwaysFailing", "fail", "boom", idem=False)
    _wait_status(env, inv, "backing-off", "running")
    r = _patch(env, inv, "pause")
    assert r.status_code == 202, r.text
    _wait_status(env, inv, "paused")
    r = _patch(env, inv, "pause")
    assert r.status_code == 200, r.text  # already paused
    r = _patch(env, inv, "resume")
    assert r.status_code == 200, r.text
    _wait_status(env, inv, "backing-off", "running", "ready")
    assert _patch(env, inv, "kill").status_code == 200
    r = env.attach(inv, timeout=15)
    assert r.status_code == 409, r.text
    r = _patch(env, inv, "pause")
    assert r.status_code == 409 and "is not running, cannot be paused" in r.json()["message"]
    r = _patch(env, inv, "resume")
    assert r.status_code == 409 and "is completed, cannot be resumed" in r.json()["message"]


def test_paused_invocation_waits_for_resume_even_when_its_timer_fires(env: Env) -> None:
    inv, _ = env.send("Stepper", "steps", {"name": "p", "sleep_ms": 1500}, idem=False)
    if env.mode == "http1":
        # request/response: the SDK suspends at once. Pausing a suspended invocation answers
        # 200 and leaves it suspended (Restate's behaviour): it completes when its timer fires.
        _wait_status(env, inv, "suspended")
        r = _patch(env, inv, "pause")
        assert r.status_code == 200, r.text
        assert _status(env, inv) == "suspended"
        r = env.attach(inv, timeout=20)
        assert r.status_code == 200 and r.json() == ["p-1", "p-2"], r.text
        return
    # HTTP/2: the attempt stays open while it sleeps (until the inactivity timeout)
    _wait_status(env, inv, "running")
    r = _patch(env, inv, "pause")
    assert r.status_code == 202, r.text
    _wait_status(env, inv, "paused")
    time.sleep(2.5)  # the sleep's timer fires while paused
    assert _status(env, inv) == "paused"
    assert env.output(inv).status_code == 470
    assert _patch(env, inv, "resume").status_code == 200
    r = env.attach(inv, timeout=20)
    assert r.status_code == 200 and r.json() == ["p-1", "p-2"], r.text


def test_pause_and_resume_refuse_invocations_not_started(env: Env) -> None:
    inv, _ = env.send("Stepper", "steps", {"name": "s", "sleep_ms": 0}, idem=False, delay="1h")
    r = _patch(env, inv, "pause")
    assert r.status_code == 409, r.text
    r = _patch(env, inv, "resume")
    assert r.status_code == 425, r.text
    assert "either inboxed or scheduled" in r.json()["message"]
    r = _patch(env, inv, "restart-as-new")
    assert r.status_code == 425, r.text
    r = _patch(env, inv, "purge-journal")
    assert r.status_code == 409 and "is not yet completed" in r.json()["message"]
    assert _patch(env, inv, "cancel").status_code in (200, 202)


def test_restart_as_new_runs_the_same_input_again(env: Env) -> None:
    r = env.call("Stepper", "steps", {"name": "y", "sleep_ms": 10}, idem=False)
    assert r.status_code == 200 and r.json() == ["y-1", "y-2"], r.text
    old = r.headers["x-restate-id"]
    r = _patch(env, old, "restart-as-new")
    assert r.status_code == 200, r.text
    new = r.json()["new_invocation_id"]
    assert new.startswith("inv_") and new != old
    r = env.attach(new, timeout=15)
    assert r.status_code == 200 and r.json() == ["y-1", "y-2"], r.text
    # copying a journal prefix: entries 0..1 (input, first run) plus the run's completion
    for frm in ("1", "3"):
        r = _patch(env, old, "restart-as-new", **{"from": frm})
        assert r.status_code == 200, r.text
        r = env.attach(r.json()["new_invocation_id"], timeout=15)
        assert r.status_code == 200 and r.json() == ["y-1", "y-2"], r.text
    r = _patch(env, old, "restart-as-new", **{"from": "99"})
    assert r.status_code == 400, r.text
    assert "contains some Commands without respective Completions" in r.json()["message"]


def test_restart_as_new_of_an_object_call_applies_it_again(env: Env) -> None:
    key = new_key()
    r = env.call("Counter", "add", 3, key=key, idem=False)
    assert r.status_code == 200, r.text
    r = _patch(env, r.headers["x-restate-id"], "restart-as-new")
    assert r.status_code == 200, r.text
    assert env.attach(r.json()["new_invocation_id"], timeout=15).json() == {"oldValue": 3, "newValue": 6}
    assert env.call_json("Counter", "get", key=key, idem=False) == 6


def test_restart_as_new_refusals(env: Env) -> None:
    running, _ = env.send("Stepper", "steps", {"name": "r", "sleep_ms": 60_000}, idem=False)
    r = _patch(env, running, "restart-as-new")
    assert r.status_code == 409 and "is still running" in r.json()["message"], r.text
    assert _patch(env, running, "kill").status_code == 200

    wf = new_key()
    run_id, _ = env.send("BlockAndWaitWorkflow", "run", "v", key=wf, idem=False)
    assert env.call("BlockAndWaitWorkflow", "unblock", "out", key=wf, idem=False).status_code == 200
    assert env.attach(run_id, timeout=15).status_code == 200
    r = _patch(env, run_id, "restart-as-new")
    assert r.status_code == 422, r.text

    r = env.call("Stepper", "steps", {"name": "j", "sleep_ms": 0}, idem=False)
    done = r.headers["x-restate-id"]
    assert _patch(env, done, "purge-journal").status_code == 200
    assert _patch(env, done, "purge-journal").status_code == 200  # idempotent
    # the result stays; only the journal is gone, so it cannot be restarted
    r = env.output(done)
    assert r.status_code == 200 and r.json() == ["j-1", "j-2"], r.text
    r = _patch(env, done, "restart-as-new")
    assert r.status_code == 410, r.text

    r = _patch(env, done, "restart-as-new", **{"from": "x"})
    assert r.status_code == 400, r.text


def test_bad_invocation_id_is_400(env: Env) -> None:
    for action in ("pause", "resume", "restart-as-new", "purge-journal"):
        r = _patch(env, "not-an-id", action)
        assert r.status_code == 400, r.text
        assert "invocation_id" in r.json()["message"]


def test_attach_from_a_handler(env: Env) -> None:
    inv, _ = env.send("Stepper", "steps", {"name": "a", "sleep_ms": 1000}, idem=False)
    r = env.call("Stepper", "attachTo", inv, idem=False, timeout=30)
    assert r.status_code == 200 and r.json() == ["a-1", "a-2"], r.text
    # attaching again after completion answers from the stored result
    r = env.call("Stepper", "attachTo", inv, idem=False, timeout=30)
    assert r.status_code == 200 and r.json() == ["a-1", "a-2"], r.text
