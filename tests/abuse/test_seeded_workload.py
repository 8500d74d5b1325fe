"""A seeded random workload under periodic server kills, checked against results computed
without durably (``workload.py``).

Random programs of calls, sends (some delayed, some cancelled), sleeps, state updates,
``ctx.run`` and awakeables over six keys of ``Interp`` are submitted with an idempotency
key each, while the server is SIGKILLed and restarted every couple of seconds. Then every
program's result must equal the independently computed one, and every key's counter the
sum of the increments of everything that ran (a cancelled send contributes nothing; an
increment applied twice or lost shows).

A failure prints the seed; ``DURABLY_WORKLOAD_SEED=<seed>`` replays the same programs (the
kill moments are random: they are the fault, not the program).
"""

from __future__ import annotations

import os
import random
import threading
import time

import httpx
import pytest
from tests.abuse.workload import KEYS, Workload, expected, generate
from tests.support.harness import Env

pytestmark = [pytest.mark.restart, pytest.mark.timeout(300)]

APP = "tests.abuse.interpreter:app"
PROGRAMS = int(os.environ.get("DURABLY_WORKLOAD_PROGRAMS", "30"))
KILLS = int(os.environ.get("DURABLY_WORKLOAD_KILLS", "3"))


def _until_answered(fn, what: str, timeout: float = 120.0) -> httpx.Response:
    """Re-send (same idempotency key) through kills until an answer that is not a 5xx."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = fn()
            if r.status_code < 500:
                return r
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: no answer within {timeout}s")
        time.sleep(0.1)


def test_seeded_workload_with_kills(fault_env) -> None:
    seed = int(os.environ.get("DURABLY_WORKLOAD_SEED", random.randrange(1 << 30)))
    replay = f"seed {seed} (replay: DURABLY_WORKLOAD_SEED={seed})"
    w: Workload = generate(seed, PROGRAMS)
    want_results, want_counters = expected(w)
    env: Env = fault_env(app=APP)

    stop = threading.Event()

    def killer() -> None:
        rng = random.Random(seed)
        for _ in range(KILLS):
            if stop.wait(rng.uniform(1.0, 2.5)):
                return
            env.server.kill()
            env.server.start()

    kills = threading.Thread(target=killer, daemon=True)
    kills.start()
    try:
        for i, (key, program) in enumerate(w.programs):
            r = _until_answered(lambda key=key, program=program, i=i: env.send_raw(
                "Interp", "run", program, key=key, idem=f"w-{seed}-{i}"), f"{replay}: submit {i}")
            assert r.status_code == 202, f"{replay}: submit {i}: {r.status_code} {r.text}"
        results = []
        for i, (key, _) in enumerate(w.programs):
            r = _until_answered(lambda key=key, i=i: env.attach_idem(
                "Interp", "run", f"w-{seed}-{i}", key=key, timeout=60), f"{replay}: attach {i}")
            assert r.status_code == 200, f"{replay}: program {i}: {r.status_code} {r.text}"
            results.append(r.json())
    finally:
        stop.set()
        kills.join(60)
    assert results == want_results, f"{replay}: results differ"

    def counters_match() -> None:
        got = {k: env.call_json("Interp", "get", key=k, idem=False) for k in KEYS}
        assert got == {k: want_counters.get(k, 0) for k in KEYS}, f"{replay}: counters {got}"

    env.poll(counters_match, timeout=60, interval=0.5)
    time.sleep(1.0)  # a late duplicate (a send run twice) would show up now
    counters_match()
    print(f"{replay}: {len(w.programs)} programs, {KILLS} kills, counters {dict(want_counters)}")
