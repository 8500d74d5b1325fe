"""Retention and cleanup: under a steady load with short retentions the store stays bounded.

``durably serve --cleanup-interval 1s``; ``PATCH /services/{name}`` sets 2 s retentions
(``idempotency_retention`` for the counter and the run-heavy service,
``workflow_completion_retention`` and ``journal_retention`` for the workflow). Client threads
then drive idempotent adds, workflow runs and ``ctx.run`` invocations for a while, and the
row counts of the SQLite file (opened read-only) are sampled every half second:

* at every sample, the completed invocations stored are no more than those answered in the
  last ``retention + slack`` seconds (plus those in flight): nothing outlives its retention
  by more than a few cleanup rounds, so the store cannot grow without bound;
* when the load stops, invocations, journals, workflow state and promises drain to nothing
  but the objects' own state (which has no retention);
* an idempotency key whose entry expired starts a new invocation (the add applies again).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import httpx
import pytest
from tests.support.harness import DurablyServer, Env, new_key, poll

pytestmark = [pytest.mark.timeout(180)]

RETENTION_S = 2
SLACK_S = 5  # cleanup every 1 s, plus scheduling delays on a busy machine
LOAD_S = 12
THREADS = 4
KEYS = [f"r{i}" for i in range(4)]


def _counts(server: DurablyServer) -> dict[str, int]:
    out = {
        t: server.store_rows(f"SELECT COUNT(*) FROM {t}")[0][0]
        for t in ("invocation", "journal", "state", "promise", "timer", "subscriber")
    }
    out["completed"] = server.store_rows(
        "SELECT COUNT(*) FROM invocation WHERE status = 'completed'"
    )[0][0]
    return out


def test_store_stays_bounded_under_steady_load(fault_env, tmp_path) -> None:
    env: Env = fault_env("h2", server_options={"cleanup_interval": "1s"},
                         services_env={"EFFECTS_FILE": str(tmp_path / "effects.log")})
    if not hasattr(env.server, "store_rows"):
        pytest.skip("counts rows in durably's store (SQLite file or PostgreSQL database)")
    for service, fields in {
        "FaultCounter": {"idempotency_retention": f"{RETENTION_S}s"},
        "Effects": {"idempotency_retention": f"{RETENTION_S}s", "journal_retention": f"{RETENTION_S}s"},
        "FaultWorkflow": {"workflow_completion_retention": f"{RETENTION_S}s",
                          "journal_retention": f"{RETENTION_S}s"},
    }.items():
        r = env.patch_service(service, **fields)
        assert r.status_code == 200, f"PATCH {service}: {r.status_code} {r.text}"

    answered: deque[float] = deque()  # completion times of answered invocations
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []
    first_key = new_key()
    expected_adds = {k: 0 for k in KEYS}

    def drive(worker: int) -> None:
        n = 0
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                n += 1
                kind = n % 3
                try:
                    if kind == 0:
                        key = KEYS[(worker + n) % len(KEYS)]
                        ik = first_key if (worker, n) == (0, 3) else new_key()
                        r = env.call("FaultCounter", "add", 1, key=key, idem=ik, client=client)
                        if r.status_code == 200:
                            with lock:
                                expected_adds[key] += 1
                    elif kind == 1:
                        r = client.post(f"{env.ingress}/FaultWorkflow/w-{worker}-{n}-{new_key()[:6]}/run",
                                        json=n)
                    else:
                        r = env.call("Effects", "process", 1, client=client, idem=True)
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                    return
                if r.status_code != 200:
                    errors.append(f"{r.request.url}: {r.status_code} {r.text}")
                    return
                with lock:
                    answered.append(time.monotonic())

    threads = [threading.Thread(target=drive, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    samples = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < LOAD_S:
            time.sleep(0.5)
            now = time.monotonic()
            counts = _counts(env.server)
            with lock:
                recent = sum(1 for t in answered if t > now - (RETENTION_S + SLACK_S))
                total = len(answered)
            samples.append((round(now - started, 1), total, recent, counts))
            # each answered invocation is one row; a few more may be in flight
            assert counts["completed"] <= recent + 2 * THREADS, (
                f"{counts['completed']} completed invocations stored, only {recent} answered in "
                f"the last {RETENTION_S + SLACK_S} s; samples {samples}"
            )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[:3]
    assert len(answered) > 60, f"too little load: {len(answered)} invocations"
    assert samples[-1][1] > 3 * max(1, samples[-1][3]["completed"]), (
        f"the store kept most of the work: {samples[-1]}"
    )

    # the load is over: everything with a retention drains away
    def drained() -> None:
        counts = _counts(env.server)
        assert counts["invocation"] == 0, counts
        assert counts["journal"] == 0, counts
        assert counts["promise"] == 0 and counts["timer"] == 0 and counts["subscriber"] == 0, counts
        # only the counters' own state is left: workflow state expired with its workflow
        assert counts["state"] == len(KEYS), counts

    poll(drained, timeout=RETENTION_S + SLACK_S + 10, interval=0.5)

    # an expired idempotency key is a new invocation: the add applies again
    key = KEYS[0]
    before = env.call_json("FaultCounter", "get", key=key, idem=False)
    assert before == expected_adds[key]
    r = env.call("FaultCounter", "add", 1, key=key, idem=first_key)
    assert r.status_code == 200 and r.json() == before + 1, r.text
    print(f"{len(answered)} invocations in {LOAD_S} s; samples (t, answered, recent, counts): "
          f"{samples[::4]}")
