"""The deployment is unreachable for a while (the services process is stopped): the
invocations back off per their retry policy and complete, once, when it returns.

The counters are read as an operator reads them, from ``sys_invocation`` over the admin
API's ``POST /query``: while the deployment is away every invocation is ``backing-off``,
its ``retry_count`` only grows, its last failure names the deployment, and (on durably) the
delay it waits (``next_retry_at - modified_at``) is the policy's delay for that count
(``FaultCounter``: 100 ms x2, at most 1 s). When the services are back, every invocation
completes with the right result, once.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from tests.support.harness import DurablyServer, Env, poll

pytestmark = [pytest.mark.restart, pytest.mark.timeout(120)]

KEYS = [f"u{i}" for i in range(5)]
MIN_RETRIES = 5  # 100 + 200 + 400 + 800 ms of backoff: about 1.5 s away


def _policy_delay_ms(retry_count: int) -> int:
    return int(min(100 * 2 ** max(retry_count - 1, 0), 1000))


def _ms(ts: str | None) -> int | None:
    if not ts:
        return None
    return int(dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def _rows(env: Env) -> dict[str, tuple]:
    rows = env.query(
        "SELECT id, status, retry_count, last_failure, next_retry_at, modified_at "
        "FROM sys_invocation WHERE target_service_name = 'FaultCounter'"
    )
    return {
        r["id"]: (r["status"], r.get("retry_count") or 0, r.get("last_failure"),
                  _ms(r.get("next_retry_at")), _ms(r.get("modified_at")))
        for r in rows
    }


@pytest.mark.parametrize("mode", ["h2", "http1"])
def test_deployment_unreachable_then_back(fault_env, mode: str) -> None:
    env: Env = fault_env(mode)
    exact_delays = isinstance(env.server, DurablyServer)
    env.services.kill()
    ids = [env.send("FaultCounter", "add", 1, key=k)[0] for k in KEYS]

    last: dict[str, int] = {}

    def backing_off_enough() -> None:
        rows = _rows(env)
        assert set(ids) <= set(rows), f"missing invocations: {set(ids) - set(rows)}"
        for inv_id in ids:
            status, retries, failure, next_retry_at, modified_at = rows[inv_id]
            assert retries >= last.get(inv_id, 0), f"{inv_id}: retry count went down"
            last[inv_id] = retries
            if status == "backing-off" and exact_delays:
                assert failure and env.services.url.rstrip("/") in failure, failure
                waited = next_retry_at - modified_at
                assert _policy_delay_ms(retries) - 50 <= waited <= _policy_delay_ms(retries), (
                    f"{inv_id}: waits {waited} ms after {retries} failures; the policy says "
                    f"{_policy_delay_ms(retries)} ms"
                )
        assert all(last[i] >= MIN_RETRIES for i in ids), f"retry counts so far: {last}"

    poll(backing_off_enough, timeout=60, interval=0.05)
    # one more look a little later: still backing off, counts never lower
    time.sleep(0.5)
    rows = _rows(env)
    for inv_id in ids:
        assert rows[inv_id][0] in ("backing-off", "running", "ready"), rows[inv_id]
        assert rows[inv_id][1] >= last[inv_id]

    env.services.start()
    for inv_id in ids:
        r = env.attach(inv_id, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json() == 1, "applied more than once"
    for key in KEYS:
        assert env.call_json("FaultCounter", "get", key=key, idem=False) == 1
    final = _rows(env)
    for inv_id in ids:
        # attempt counters belong to in-flight invocations (as in Restate's sys_invocation)
        assert final[inv_id][0] == "completed", final[inv_id]
