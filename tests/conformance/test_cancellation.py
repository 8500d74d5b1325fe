"""Cancellation: cancel (from the admin API or from a handler) reaches the child the root
is blocked on (a call, a sleep, an awakeable); the child's await fails with 409, the root
sees the 409 and ends normally, and the object locks are released. For CALL the child's
own child, queued behind it on the same key, is cancelled too."""

from __future__ import annotations

import pytest
from tests.support.harness import Env

SERVICES = ["CancelTestRunner", "CancelTestBlockingService", "AwakeableHolder", "Proxy", "TestUtilsService"]

OPS = ["CALL", "SLEEP", "AWAKEABLE"]


def _wait_blocked_and_unlock(env: Env, key: str) -> None:
    def holds() -> None:
        assert env.call_json("AwakeableHolder", "hasAwakeable", key=key, idem=False) is True

    env.poll(holds)
    assert env.call("AwakeableHolder", "unlock", "cancel", key=key).status_code == 200


def _verify_cancelled(env: Env, key: str, cancel) -> None:
    def cancelled() -> None:
        cancel()
        # verifyTest can only run once startTest has finished (same object key).
        r = env.call("CancelTestRunner", "verifyTest", key=key, timeout=1.0)
        assert r.status_code == 200, r.text
        assert r.json() is True

    env.poll(cancelled, timeout=10)

    def unlocked() -> None:
        r = env.call("CancelTestBlockingService", "isUnlocked", key=key, timeout=2.0)
        assert r.status_code == 200, r.text

    env.poll(unlocked)


@pytest.mark.parametrize("op", OPS)
def test_cancel_from_admin_api(env: Env, op: str) -> None:
    key = env.new_key()
    inv_id, _ = env.send("CancelTestRunner", "startTest", op, key=key)
    _wait_blocked_and_unlock(env, key)

    def cancel() -> None:
        r = env.cancel(inv_id)
        assert r.status_code in (200, 202, 404, 409), r.text

    _verify_cancelled(env, key, cancel)


@pytest.mark.parametrize("op", OPS)
def test_cancel_from_context(env: Env, op: str) -> None:
    key = env.new_key()
    inv_id = env.call_json("Proxy", "oneWayCall", env.proxy_request("CancelTestRunner", "startTest", op, key=key))
    assert inv_id.startswith("inv_")
    _wait_blocked_and_unlock(env, key)

    def cancel() -> None:
        env.call_json("TestUtilsService", "cancelInvocation", inv_id)

    _verify_cancelled(env, key, cancel)
