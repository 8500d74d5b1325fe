"""Combinators: await any / all / first-successful over awakeables, sleeps, runs and named
signals (a signal may arrive before the handler asks for it)."""

from __future__ import annotations

from tests.support.harness import Env

SERVICES = ["VirtualObjectCommandInterpreter", "TestUtilsService"]

VO = "VirtualObjectCommandInterpreter"


def awk(k: str) -> dict:
    return {"type": "createAwakeable", "awakeableKey": k}


def sleep(ms: int) -> dict:
    return {"type": "sleep", "timeoutMillis": ms}


def sig(name: str) -> dict:
    return {"type": "createSignal", "signalName": name}


def run_ok(value: str) -> dict:
    return {"type": "runReturns", "value": value}


def run_err(reason: str) -> dict:
    return {"type": "runThrowTerminalException", "reason": reason}


def one(kind: str, *commands: dict) -> dict:
    return {"commands": [{"type": kind, "commands": list(commands)}]}


def resolve_signal(env: Env, inv_id: str, name: str, value: str) -> None:
    env.call_json("TestUtilsService", "resolveSignal", {"invocationId": inv_id, "signalName": name, "value": value})


def reject_signal(env: Env, inv_id: str, name: str, reason: str) -> None:
    env.call_json("TestUtilsService", "rejectSignal", {"invocationId": inv_id, "signalName": name, "reason": reason})


def attach_ok(env: Env, inv_id: str):
    r = env.attach(inv_id)
    assert r.status_code == 200, r.text
    return r.json()


def test_awakeable_or_timeout_using_await_any(env: Env) -> None:
    out = env.call_json(VO, "interpretCommands", one("awaitAny", awk("awk1"), sleep(100)), key=env.new_key())
    assert out == "sleep"


def test_awakeable_or_timeout_using_awakeable_timeout_command(env: Env) -> None:
    body = {"commands": [{"type": "awaitAwakeableOrTimeout", "awakeableKey": "should-timeout-awk", "timeoutMillis": 100}]}
    r = env.call(VO, "interpretCommands", body, key=env.new_key())
    assert r.status_code == 500, r.text
    assert "await-timeout" in r.text


def test_first_successful_completed_awakeable(env: Env) -> None:
    key = env.new_key()
    body = one("awaitAnySuccessful", awk("awk0"), run_err("run0"), awk("awk1"), run_err("run1"), awk("awk2"), run_err("run2"))
    pending = env.background(env.call, VO, "interpretCommands", body, key=key)

    def has_awk2() -> None:
        assert env.call_json(VO, "hasAwakeable", "awk2", key=key, idem=False) is True

    env.poll(has_awk2)
    # Shared handlers run beside the blocked exclusive handler and see its state.
    assert env.call_json(VO, "hasAwakeable", "awk0", key=key) is True
    assert env.call_json(VO, "hasAwakeable", "awk1", key=key) is True
    assert not pending.done()

    env.call_json(VO, "rejectAwakeable", {"awakeableKey": "awk2", "reason": "fail"}, key=key)
    env.call_json(VO, "resolveAwakeable", {"awakeableKey": "awk1", "value": "awk1-result"}, key=key)

    r = pending.result(timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == "awk1-result"
    assert env.call_json(VO, "getResults", key=key) == ["awk1-result"]


def test_signal_first_successful_or_all_failed(env: Env) -> None:
    inv_id, _ = env.send(VO, "interpretCommands", one("awaitAnySuccessful", sig("sig0"), sig("sig1"), sig("sig2")), key=env.new_key())
    reject_signal(env, inv_id, "sig0", "fail0")
    reject_signal(env, inv_id, "sig2", "fail2")
    resolve_signal(env, inv_id, "sig1", "success1")
    assert attach_ok(env, inv_id) == "success1"


def test_signal_all_successful_or_first_failed(env: Env) -> None:
    inv_id, _ = env.send(VO, "interpretCommands", one("awaitAllSucceededOrFirstFailed", sig("sig0"), sig("sig1"), sig("sig2")), key=env.new_key())
    resolve_signal(env, inv_id, "sig0", "val0")
    resolve_signal(env, inv_id, "sig1", "val1")
    resolve_signal(env, inv_id, "sig2", "val2")
    assert attach_ok(env, inv_id) == "val0|val1|val2"


def test_signal_all_completed(env: Env) -> None:
    inv_id, _ = env.send(VO, "interpretCommands", one("awaitAllCompleted", sig("sig0"), sig("sig1"), sig("sig2")), key=env.new_key())
    resolve_signal(env, inv_id, "sig0", "val0")
    reject_signal(env, inv_id, "sig1", "err1")
    resolve_signal(env, inv_id, "sig2", "val2")
    assert attach_ok(env, inv_id) == "ok:val0|err:err1|ok:val2"


def test_signal_first_completed(env: Env) -> None:
    inv_id, _ = env.send(VO, "interpretCommands", one("awaitAny", sig("sig0"), sig("sig1"), sig("sig2")), key=env.new_key())
    resolve_signal(env, inv_id, "sig1", "first")
    assert attach_ok(env, inv_id) == "first"


def test_mixed_run_wins_race_against_signal(env: Env) -> None:
    out = env.call_json(VO, "interpretCommands", one("awaitFirstCompleted", sig("sig"), run_ok("runval")), key=env.new_key())
    assert out == "runval"


def test_mixed_signal_wins_after_run_fails(env: Env) -> None:
    inv_id, _ = env.send(VO, "interpretCommands", one("awaitFirstSucceededOrAllFailed", run_err("fail"), sig("sig")), key=env.new_key())
    resolve_signal(env, inv_id, "sig", "sigval")
    assert attach_ok(env, inv_id) == "sigval"


def test_mixed_all_succeeded_run_and_signal(env: Env) -> None:
    inv_id, _ = env.send(VO, "interpretCommands", one("awaitAllSucceededOrFirstFailed", run_ok("runval"), sig("sig")), key=env.new_key())
    resolve_signal(env, inv_id, "sig", "sigval")
    assert attach_ok(env, inv_id) == "runval|sigval"


def test_mixed_all_completed_run_signal_and_failed_run(env: Env) -> None:
    inv_id, _ = env.send(VO, "interpretCommands", one("awaitAllCompleted", run_ok("runval"), sig("sig"), run_err("fail")), key=env.new_key())
    resolve_signal(env, inv_id, "sig", "sigval")
    assert attach_ok(env, inv_id) == "ok:runval|ok:sigval|err:fail"
