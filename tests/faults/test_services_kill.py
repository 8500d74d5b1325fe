"""SIGKILL the services process while handlers are inside ``ctx.run`` and ``ctx.sleep``.

``Effects/process`` runs 4 ``ctx.run`` blocks, each followed by a 300 ms ``ctx.sleep``;
every execution of a block appends ``<invocation id> <step> <nonce>`` to a file outside the
SDK process and returns its nonce. While a batch of invocations runs, the services process
is SIGKILLed at random moments (at least 5 times) and started again on the same port.

Afterwards every invocation has completed exactly once, and for every step the nonce the
server acknowledged (the handler's output) is the *last* execution of that block in the
file: a block may run again only if it had not been acknowledged yet (the kill came between
its effect and the stored completion), never after.
"""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import pytest
from tests.support.harness import DurablyServer, Env

pytestmark = [pytest.mark.restart, pytest.mark.timeout(180)]

INVOCATIONS = 16
STEPS = 4
KILLS = 6


def _effects(path: Path) -> dict[tuple[str, int], list[str]]:
    runs: dict[tuple[str, int], list[str]] = collections.defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            inv_id, step, nonce = line.split()
            runs[(inv_id, int(step))].append(nonce)
    return runs


@pytest.mark.parametrize("mode", ["h2", "http1"])
def test_kill_services_during_run_and_sleep(fault_env, tmp_path: Path, mode: str) -> None:
    effects_file = tmp_path / "effects.log"
    env: Env = fault_env(mode, services_env={"EFFECTS_FILE": str(effects_file),
                                            "EFFECTS_SLEEP_MS": "300"})
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    ids = []
    for i in range(INVOCATIONS):
        inv_id, status = env.send("Effects", "process", STEPS, idem=f"effects-{i}")
        assert status == "Accepted"
        ids.append(inv_id)
        time.sleep(rng.uniform(0.0, 0.1))  # spread them over the steps

    seen_before_kill = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.2, 0.8))
        seen_before_kill.append(sum(len(v) for v in _effects(effects_file).values()))
        env.services.kill()
        time.sleep(rng.uniform(0.0, 0.5))
        env.services.start()

    outputs = {}
    for inv_id in ids:
        r = env.attach(inv_id, timeout=90)
        assert r.status_code == 200, f"seed {seed}: {inv_id}: {r.status_code} {r.text}"
        outputs[inv_id] = r.json()
    # the kills landed while work was going on, not after it
    assert seen_before_kill[0] < INVOCATIONS * STEPS, f"seed {seed}: all done before the first kill"

    runs = _effects(effects_file)
    assert {inv for inv, _ in runs} == set(ids), f"seed {seed}: effects of unknown invocations"
    reexecuted = 0
    for inv_id, nonces in outputs.items():
        assert isinstance(nonces, list) and len(nonces) == STEPS, (inv_id, nonces)
        for step, acked in enumerate(nonces):
            executions = runs[(inv_id, step)]
            assert acked in executions, f"seed {seed}: {inv_id} step {step}: acknowledged {acked} never ran"
            assert executions[-1] == acked, (
                f"seed {seed}: {inv_id} step {step} ran again after its result {acked} was "
                f"acknowledged: executions {executions}"
            )
            assert executions.count(acked) == 1
            reexecuted += len(executions) - 1

    # every invocation completed once: the same id answers the same output again
    for i, inv_id in enumerate(ids):
        again, status = env.send("Effects", "process", STEPS, idem=f"effects-{i}")
        assert again == inv_id and status == "PreviouslyAccepted"
        assert env.attach(inv_id, timeout=10).json() == outputs[inv_id]
    if isinstance(env.server, DurablyServer):
        rows = env.server.store_rows(
            "SELECT status, COUNT(*) FROM invocation WHERE service = 'Effects' GROUP BY status"
        )
        assert rows == [("completed", INVOCATIONS)], rows
    print(f"seed {seed}: {INVOCATIONS} invocations x {STEPS} runs, {KILLS} kills, "
          f"{reexecuted} runs executed again before their acknowledgement")
