"""Network faults between durably and its services (``faultproxy.py`` in between).

The deployment is registered through the proxy. Client threads drive idempotent counter
updates and workflow runs (the driver of the server-kill test, re-sending unanswered
requests with the same idempotency key) while the proxy cycles through added latency, a
bandwidth limit, resets, a black hole and half-closed connections, with plain forwarding
in between. After the faults clear, the state is exactly the accepted work (each add
applied once, each workflow run once).

Timeouts: during a black hole an invocation's attempt on an open connection fails with the
inactivity timeout configured for its service (2 s here; the abort timeout in
request/response mode, which has no inactivity timeout); one that needs a new connection
fails with the connect timeout (10 s, Restate's default). Never sooner, and it does fail
(no hang); after the fault clears the invocation completes, once.
"""

from __future__ import annotations

import random
import time

import pytest
from tests.abuse.faultproxy import FaultProxy
from tests.faults.test_server_kill import Driver, check_accepted_work
from tests.support.harness import Env, ServicesProcess, poll

pytestmark = [pytest.mark.restart, pytest.mark.timeout(300)]

TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 10.0
PHASES: list[tuple[str, dict]] = [
    ("pass", {"latency": 0.3}),
    ("pass", {"bandwidth": 20_000}),
    ("reset", {}),
    ("blackhole", {}),
    ("half_close", {}),
]


def _with_proxy(fault_env, mode: str) -> tuple[Env, FaultProxy]:
    proxies: list[FaultProxy] = []

    def via(services: ServicesProcess) -> str:
        proxy = FaultProxy(services.port)
        proxy.start()
        proxies.append(proxy)
        return proxy.url

    env = fault_env(mode, via=via)
    for service in ("FaultCounter", "FaultWorkflow"):
        r = env.patch_service(service, inactivity_timeout=f"{TIMEOUT_S:g}s",
                              abort_timeout=f"{TIMEOUT_S:g}s")
        assert r.status_code == 200, r.text
    return env, proxies[0]


def _timeout_probe(env: Env, proxy: FaultProxy, key: str) -> tuple[float, str]:
    """Under a black hole: how long until an attempt fails, and with what message."""
    proxy.set("blackhole")
    try:
        started = time.monotonic()
        inv_id, _ = env.send("FaultCounter", "add", 1, key=key)

        def failed() -> dict:
            view = env.client.get(f"{env.admin}/invocations/{inv_id}").json()
            assert view.get("last_failure"), str({k: v for k, v in view.items() if v is not None})
            return view

        view = poll(failed, timeout=60, interval=0.05)
        elapsed = time.monotonic() - started
    finally:
        proxy.clear()
    r = env.attach(inv_id, timeout=60)
    assert r.status_code == 200 and r.json() == 1, r.text
    return elapsed, view["last_failure"]


@pytest.mark.parametrize("mode", ["h2", "http1"])
def test_network_faults(fault_env, mode: str) -> None:
    env, proxy = _with_proxy(fault_env, mode)
    try:
        if mode == "h2":
            # no connection yet: the attempt waits for one in the black hole
            elapsed, failure = _timeout_probe(env, proxy, "cold")
            assert "connect to" in failure and "timed out after 10.0s" in failure, failure
            assert elapsed >= CONNECT_TIMEOUT_S, f"failed after {elapsed:.2f}s: {failure}"
        env.call_json("FaultCounter", "add", 1, key="warm-up")  # a connection in the pool
        elapsed, failure = _timeout_probe(env, proxy, "warm")
        # request/response (HTTP/1.1) has no inactivity timeout: the abort timeout bounds it
        which = "inactivity" if mode == "h2" else "abort"
        assert f"did not answer within the {which} timeout" in failure, failure
        assert elapsed >= TIMEOUT_S, f"failed after {elapsed:.2f}s, before the timeout: {failure}"

        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        driver = Driver(env, seed)
        driver.start()
        try:
            for mode_name, kw in PHASES:
                time.sleep(1.0)
                proxy.set(mode_name, **kw)
                time.sleep(2.5)
                proxy.clear()
            time.sleep(2.0)
        finally:
            proxy.clear()
            driver.finish()
        check_accepted_work(env, driver, seed, rng, min_adds=5, min_workflows=1)
        print(f"seed {seed}: {len(driver.ops)} ops, {proxy.connections} connections, "
              f"first black-holed attempt failed after {elapsed:.2f}s")
    finally:
        proxy.close()
