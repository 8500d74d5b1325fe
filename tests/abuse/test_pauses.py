"""SIGSTOP/SIGCONT of the server and of the services process under load.

* the server is stopped for longer than the services' inactivity and abort timeouts, while
  delayed sends (timers) come due and ``Effects/process`` invocations are between steps;
* the services process is stopped for longer than the inactivity timeout (2 s here), so
  the server times out its attempts and retries them.

Afterwards: every delayed send fired exactly once (late, not lost, not doubled), the
counter and workflow driver's accepted work is applied exactly once, and every ``ctx.run``
step whose result the server acknowledged ran no more after it (its acknowledged nonce is
the last execution recorded for that step). Nothing hangs: every invocation completes.
"""

from __future__ import annotations

import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from tests.faults.test_server_kill import Driver, check_accepted_work
from tests.support.harness import Env, _signal

pytestmark = [pytest.mark.restart, pytest.mark.timeout(300)]

TIMEOUT_S = 2.0
PAUSE_S = 5.0
DELAYED = 20


def _ran_after_ack(effects_file: Path, acknowledged: dict[str, list[str]]) -> list[str]:
    """Steps that executed again after the server acknowledged their result."""
    runs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for line in effects_file.read_text().splitlines():
        inv, step, nonce = line.split()
        runs[(inv, step)].append(nonce)
    bad = []
    for inv, nonces in acknowledged.items():
        for step, nonce in enumerate(nonces):
            seen = runs[(inv, str(step))]
            if nonce not in seen or seen[-1] != nonce:
                bad.append(f"{inv} step {step}: acknowledged {nonce}, executions {seen}")
    return bad


@pytest.mark.parametrize("paused", ["server", "services"])
def test_pause(fault_env, tmp_path: Path, paused: str) -> None:
    effects_file = tmp_path / "effects.log"
    env: Env = fault_env("h2", services_env={"EFFECTS_FILE": str(effects_file),
                                              "EFFECTS_SLEEP_MS": "200"})
    for service in ("FaultCounter", "FaultWorkflow", "Effects"):
        r = env.patch_service(service, inactivity_timeout=f"{TIMEOUT_S:g}s",
                              abort_timeout=f"{TIMEOUT_S:g}s")
        assert r.status_code == 200, r.text
    proc = env.server.proc if paused == "server" else env.services.proc
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)

    # timers that come due while the server is stopped
    for i in range(DELAYED):
        env.send("FaultCounter", "add", 1, key="delayed", idem=f"delayed-{i}",
                 delay=f"{rng.randint(500, 3000)}ms")
    effects = [env.send("Effects", "process", 4)[0] for _ in range(6)]
    driver = Driver(env, seed)
    driver.start()
    try:
        time.sleep(1.0)
        _signal(proc, signal.SIGSTOP)
        try:
            time.sleep(PAUSE_S)
        finally:
            _signal(proc, signal.SIGCONT)
        time.sleep(3.0)
    finally:
        driver.finish()
    check_accepted_work(env, driver, seed, rng, min_adds=3, min_workflows=0)

    acknowledged: dict[str, list[str]] = {}
    for inv_id in effects:
        r = env.attach(inv_id, timeout=120)
        assert r.status_code == 200, f"{inv_id}: {r.status_code} {r.text}"
        acknowledged[inv_id] = r.json()
        assert len(acknowledged[inv_id]) == 4
    assert not _ran_after_ack(effects_file, acknowledged)

    def all_fired() -> None:
        assert env.call_json("FaultCounter", "get", key="delayed", idem=False) == DELAYED

    env.poll(all_fired, timeout=60)
    time.sleep(1.0)  # a doubled timer would show up right after
    assert env.call_json("FaultCounter", "get", key="delayed", idem=False) == DELAYED
    print(f"seed {seed}: paused the {paused} for {PAUSE_S}s; {len(driver.ops)} ops")
