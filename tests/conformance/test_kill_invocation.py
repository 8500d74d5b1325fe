"""KillInvocation: killing the root of a call tree kills its children (including a child
only queued on a key), so the object key is free again."""

from __future__ import annotations

from tests.support.harness import Env

SERVICES = ["KillTestRunner", "KillTestSingleton", "AwakeableHolder"]


def test_kill(env: Env) -> None:
    key = env.new_key()
    inv_id, _ = env.send("KillTestRunner", "startCallTree", key=key)

    def holds() -> None:
        assert env.call_json("AwakeableHolder", "hasAwakeable", key=key, idem=False) is True

    env.poll(holds)
    # Now recursiveCall #1 calls #2 on the same key, which waits forever behind #1.
    assert env.call("AwakeableHolder", "unlock", "cancel", key=key).status_code == 200

    def kill() -> None:
        r = env.kill(inv_id)
        assert r.status_code == 200, r.text

    env.poll(kill)

    def unlocked() -> None:
        r = env.call("KillTestSingleton", "isUnlocked", key=key, timeout=2.0)
        assert r.status_code == 200, r.text

    env.poll(unlocked)

    r = env.attach(inv_id)
    assert r.status_code == 409, r.text
