"""SIGKILL the server at random moments under load; nothing accepted is lost or doubled.

Client threads drive idempotent object updates (``FaultCounter/{k}/add`` with an
idempotency key each) and workflow runs (``FaultWorkflow/{id}/run/send``) while the main
thread SIGKILLs the server at random moments and restarts it on the same data directory,
at least 5 times. A request without an answer (connection refused or reset, timeout, 5xx)
is re-sent with the same idempotency key / workflow id until it is answered, as a careful
client does. At the end the state equals exactly the accepted work:

* per key, the answers of the adds are a chain: sorted by the value they returned, each is
  the previous one plus its own increment (an add applied twice, or lost after its answer,
  breaks the chain), and the final counter is the sum of all increments;
* every answered add asked again with its key gives the same answer and changes nothing;
* every workflow's output is ``2 * value + 1``, stored once.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from tests.support.harness import Env, new_key

pytestmark = [pytest.mark.restart, pytest.mark.timeout(180)]

KILLS = 6
KEYS = [f"k{i}" for i in range(8)]
THREADS = 6
RETRYABLE = {500, 502, 503, 504}


@dataclass
class Op:
    kind: str  # "add" | "workflow"
    key: str
    value: int
    idem: str = field(default_factory=new_key)
    answer: object = None
    tries: int = 0
    retried_statuses: list[int] = field(default_factory=list)


class Driver:
    """Threads that keep issuing new operations until stopped; each op is re-sent with
    the same idempotency key (or workflow id) until it gets an answer."""

    def __init__(self, env: Env, seed: int) -> None:
        self.env = env
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.ops: list[Op] = []
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(THREADS)]

    def _next(self) -> Op:
        with self.lock:
            n = len(self.ops)
            if n % 5 == 4:
                op = Op("workflow", f"wf-{n}-{new_key()[:8]}", self.rng.randint(1, 1000))
            else:
                op = Op("add", self.rng.choice(KEYS), self.rng.randint(1, 9))
            self.ops.append(op)
            return op

    def _loop(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0)) as client:
            while not self.stop.is_set():
                op = self._next()
                try:
                    self._until_answered(client, op)
                except Exception as e:  # reported by the test, never swallowed
                    self.errors.append(f"{op}: {e!r}")
                    return

    def _until_answered(self, client: httpx.Client, op: Op) -> None:
        deadline = time.monotonic() + 90
        while True:
            op.tries += 1
            try:
                if op.kind == "add":
                    r = self.env.call("FaultCounter", "add", op.value, key=op.key, idem=op.idem,
                                      client=client)
                    expected = 200
                else:
                    r = client.post(
                        f"{self.env.ingress}/FaultWorkflow/{op.key}/run/send",
                        json=op.value,
                    )
                    expected = 202
            except httpx.TransportError:
                r = None
            if r is not None:
                if r.status_code == expected:
                    op.answer = r.json()
                    return
                if r.status_code not in RETRYABLE:
                    raise AssertionError(f"unexpected answer {r.status_code} {r.text}")
                op.retried_statuses.append(r.status_code)
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer after {op.tries} tries")
            time.sleep(0.05)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)
            assert not t.is_alive(), "a client thread did not finish within 120 s"


def _answered_ops(driver: Driver) -> list[Op]:
    return [op for op in driver.ops if op.answer is not None]


@pytest.mark.parametrize("mode", ["h2", "http1"])
def test_kill_server_under_load(fault_env, mode: str) -> None:
    env: Env = fault_env(mode)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    driver = Driver(env, seed)
    driver.start()
    kill_points = 0
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.5))
            before = len(driver.ops)
            env.server.kill()
            kill_points += 1
            time.sleep(rng.uniform(0.0, 0.3))
            env.server.start()
            assert len(driver.ops) >= before
        time.sleep(rng.uniform(0.3, 1.0))
    finally:
        driver.finish()
    assert kill_points >= 5
    check_accepted_work(env, driver, seed, rng)


def check_accepted_work(env: Env, driver: Driver, seed: int, rng: random.Random,
                        min_adds: int = 20, min_workflows: int = 5) -> None:
    """Every answered operation happened exactly once (see the module's doc)."""
    assert not driver.errors, f"seed {seed}: client errors: {driver.errors[:5]}"
    ops = driver.ops
    assert all(op.answer is not None for op in ops), f"seed {seed}: unanswered ops"
    adds = [op for op in ops if op.kind == "add"]
    workflows = [op for op in ops if op.kind == "workflow"]
    assert len(adds) > min_adds and len(workflows) > min_workflows, f"too little load: {len(adds)} adds, {len(workflows)} workflows"

    # adds: a chain per key, and the final value is the sum of the accepted increments
    for key in KEYS:
        mine = sorted((op for op in adds if op.key == key), key=lambda op: op.answer)
        running = 0
        for op in mine:
            running += op.value
            assert op.answer == running, (
                f"seed {seed}: key {key}: add of {op.value} (idempotency key {op.idem}, "
                f"{op.tries} tries) answered {op.answer}, expected {running}; "
                f"answers {[(o.value, o.answer) for o in mine]}"
            )
        final = env.call_json("FaultCounter", "get", key=key, idem=False)
        assert final == running, f"seed {seed}: key {key}: counter {final}, accepted work {running}"

    # the same idempotency key again: the stored answer, no second add
    with httpx.Client(timeout=30) as client:
        for op in rng.sample(adds, min(30, len(adds))):
            r = env.call("FaultCounter", "add", op.value, key=op.key, idem=op.idem, client=client)
            assert r.status_code == 200 and r.json() == op.answer, (op, r.status_code, r.text)
    for key in KEYS:
        total = sum(op.value for op in adds if op.key == key)
        assert env.call_json("FaultCounter", "get", key=key, idem=False) == total

    # workflows: each ran to its output once; a resubmission is "PreviouslyAccepted"
    for op in workflows:
        r = env.client.get(f"{env.ingress}/restate/workflow/FaultWorkflow/{op.key}/attach",
                           timeout=60)
        assert r.status_code == 200, f"seed {seed}: workflow {op.key}: {r.status_code} {r.text}"
        assert r.json() == 2 * op.value + 1
        assert env.call_json("FaultWorkflow", "get", key=op.key, idem=False) == 2 * op.value + 1
    if workflows:
        again = env.client.post(f"{env.ingress}/FaultWorkflow/{workflows[0].key}/run/send",
                                json=workflows[0].value)
        assert again.status_code == 202 and again.json()["status"] == "PreviouslyAccepted", again.text
    retried = sum(len(op.retried_statuses) for op in ops)
    resent = sum(op.tries - 1 for op in ops)
    print(f"seed {seed}: {len(adds)} adds, {len(workflows)} workflows, "
          f"{resent} re-sends ({retried} after a 5xx)")
