"""Shared script of KillRuntime / StopRuntime: state, registered deployments and
idempotency survive a crash (SIGKILL) or a normal stop (SIGTERM) of the server."""

from __future__ import annotations

import httpx
from tests.support.harness import Env


def restart_retains_state(env: Env, graceful: bool) -> None:
    key = "my-key"  # fixed in the suite; the env (data dir) is fresh per module and mode
    with httpx.Client(timeout=30.0) as client:
        r = env.call("Counter", "add", 1, key=key, client=client)
        assert r.status_code == 200, r.text
        assert r.json() == {"oldValue": 0, "newValue": 1}

    env.server.restart(graceful=graceful)

    ik = env.new_key()  # the same key on every retry keeps the add single

    def add_again() -> None:
        with httpx.Client(timeout=5.0) as client:  # a new connection per try
            r = env.call("Counter", "add", 2, key=key, idem=ik, client=client)
        assert r.status_code == 200, r.text
        assert r.json() == {"oldValue": 1, "newValue": 3}

    env.poll(add_again, timeout=60, interval=0.5)
    assert env.call_json("Counter", "get", key=key) == 3
