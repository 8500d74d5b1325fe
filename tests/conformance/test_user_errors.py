"""UserErrors: terminal errors (with metadata) reach the ingress caller, through calls and
ctx.run; state written before a failure is kept; retryable errors are retried."""

from __future__ import annotations

import pytest
from tests.support.harness import Env

SERVICES = ["Failing", "Counter"]

METADATA = {"key1": "value1", "key2": "value2"}


def _assert_terminal(r, text: str) -> dict:
    assert r.status_code >= 400, f"expected an error, got {r.status_code} {r.text}"
    assert text in r.text, r.text
    return r.json()


def test_invoke_terminally_failing_call(env: Env) -> None:
    r = env.call("Failing", "terminallyFailingCall", {"errorMessage": "my error"}, key=env.new_key())
    assert r.status_code == 500, r.text
    assert r.json()["message"] == "my error"


def test_fail_several_times(env: Env) -> None:
    for _ in range(3):
        r = env.call("Failing", "terminallyFailingCall", {"errorMessage": "my error"}, key=env.new_key())
        assert r.status_code == 500, r.text
        assert "my error" in r.text


def test_internal_call_failure_propagation(env: Env) -> None:
    r = env.call(
        "Failing", "callTerminallyFailingCall", {"errorMessage": "propagated error"}, key=env.new_key()
    )
    assert r.status_code == 500, r.text
    assert "propagated error" in r.json()["message"]


def test_side_effect_with_terminal_error(env: Env) -> None:
    r = env.call(
        "Failing", "terminallyFailingSideEffect", {"errorMessage": "failed side effect"}, key=env.new_key()
    )
    assert r.status_code == 500, r.text
    assert "failed side effect" in r.json()["message"]


def _with_metadata(env: Env, handler: str, message: str) -> None:
    r = env.call(
        "Failing", handler, {"errorMessage": message, "metadata": METADATA}, key=env.new_key(),
        headers={"content-type": "application/json"},
    )
    body = _assert_terminal(r, message)
    assert r.headers["content-type"].startswith("application/json")
    assert message in body["message"]
    assert body.get("metadata", {}).items() >= METADATA.items(), body


def test_invoke_terminally_failing_call_with_metadata(env: Env) -> None:
    _with_metadata(env, "terminallyFailingCall", "my error with metadata")


def test_fail_several_times_with_metadata(env: Env) -> None:
    for _ in range(3):
        _with_metadata(env, "terminallyFailingCall", "my error with metadata")


def test_internal_call_failure_propagation_with_metadata(env: Env) -> None:
    _with_metadata(env, "callTerminallyFailingCall", "propagated error with metadata")


def test_side_effect_with_terminal_error_with_metadata(env: Env) -> None:
    _with_metadata(env, "terminallyFailingSideEffect", "failed side effect with metadata")


def test_set_state_then_fail_should_persist_state(env: Env) -> None:
    # Fixed key as in the suite: the env (server data dir) is fresh per module and mode.
    key = "my-failure-counter"
    r = env.call("Counter", "addThenFail", 1, key=key)
    assert r.status_code == 500, r.text
    assert "my-failure-counter" in r.text
    assert env.call_json("Counter", "get", key=key) == 1


@pytest.mark.timeout(60)
def test_invocation_with_eventual_success(env: Env) -> None:
    assert env.call_json("Failing", "failingCallWithEventualSuccess", key=env.new_key()) == 4
