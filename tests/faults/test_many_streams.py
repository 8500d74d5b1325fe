"""More invocations open at once than hypercorn holds on one HTTP/2 connection.

hypercorn refuses a connection's 1001st concurrent stream (its priority tree is capped at
1000) and drops the connection with every stream on it, whatever it advertises in
SETTINGS_MAX_CONCURRENT_STREAMS. 1,100 invocations sleeping at the same time must all
complete anyway: the server spreads them over several connections.
"""

from __future__ import annotations

import pytest
from tests.support.harness import Env

pytestmark = [pytest.mark.timeout(240)]

COUNT = 1100


def test_more_sleeping_invocations_than_one_connection_holds(fault_env) -> None:
    env: Env = fault_env("h2")
    ids = [env.send("Effects", "nap", 3000, idem=f"nap-{i}")[0] for i in range(COUNT)]
    for inv_id in ids:
        r = env.attach(inv_id, timeout=120)
        assert r.status_code == 200, f"{inv_id}: {r.status_code} {r.text}"
        assert r.json() == 3000
