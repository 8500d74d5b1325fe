"""SleepWithFailures: the services process is killed / stopped during a 4 s sleep and
started again on the same port; the server keeps the timer, retries the broken attempt and
replays the journal into the new process."""

from __future__ import annotations

import random
import time

import pytest
from tests.support.harness import Env

SERVICES = ["VirtualObjectCommandInterpreter"]

pytestmark = pytest.mark.restart

SLEEP_MS = 4000


def _sleep_and_restart_endpoint(env: Env, graceful: bool) -> None:
    body = {"commands": [{"type": "awaitOne", "command": {"type": "sleep", "timeoutMillis": SLEEP_MS}}]}
    start = time.monotonic()
    pending = env.background(
        env.call, "VirtualObjectCommandInterpreter", "interpretCommands", body, key=env.new_key()
    )
    time.sleep(random.uniform(1.0, 2.0))
    assert not pending.done()
    env.services.restart(graceful=graceful)
    r = pending.result(timeout=50)
    assert r.status_code == 200, r.text
    assert r.json() == "sleep"
    assert time.monotonic() - start >= SLEEP_MS / 1000


@pytest.mark.timeout(60)
def test_sleep_and_kill_service_endpoint(env: Env) -> None:
    _sleep_and_restart_endpoint(env, graceful=False)


@pytest.mark.timeout(60)
def test_sleep_and_terminate_service_endpoint(env: Env) -> None:
    _sleep_and_restart_endpoint(env, graceful=True)
