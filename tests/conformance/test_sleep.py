"""Sleep: a durable sleep; many concurrent sleeps."""

from __future__ import annotations

import random
import time

import pytest
from tests.support.harness import Env

SERVICES = ["VirtualObjectCommandInterpreter"]


def _sleep(ms: int) -> dict:
    return {"type": "sleep", "timeoutMillis": ms}


def test_sleep(env: Env) -> None:
    start = time.monotonic()
    out = env.call_json(
        "VirtualObjectCommandInterpreter", "interpretCommands",
        {"commands": [{"type": "awaitOne", "command": _sleep(10)}]}, key=env.new_key(),
    )
    assert out == "sleep"
    assert time.monotonic() - start >= 0.010


@pytest.mark.timeout(90)
def test_many_sleeps(env: Env) -> None:
    def one() -> str:
        body = {
            "commands": [
                {
                    "type": "awaitAllCompleted",
                    "commands": [_sleep(random.randint(10, 50)) for _ in range(20)],
                }
            ]
        }
        return env.call_json("VirtualObjectCommandInterpreter", "interpretCommands", body, key=env.new_key())

    start = time.monotonic()
    futures = [env.background(one) for _ in range(50)]
    results = [f.result(timeout=60) for f in futures]
    assert time.monotonic() - start < 60
    assert results == ["|".join(["ok:sleep"] * 20)] * 50
