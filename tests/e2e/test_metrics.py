"""`GET /metrics` on the admin port: Prometheus text with durably's counters, histograms
and gauges, after real invocations against the conformance services."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from tests.support.harness import Env, start_env, stop_env

SERVICES = ["Counter", "AwakeableHolder"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if os.environ.get("DURABLY_TEST_TARGET", "durably") != "durably":
        pytest.skip("durably's own metrics")
    e = start_env(tmp_path_factory.mktemp("metrics"), SERVICES, "h2")
    try:
        yield e
    finally:
        stop_env(e)


def scrape(env: Env) -> dict[str, float]:
    r = env.client.get(f"{env.admin}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics(env: Env) -> None:
    key = env.new_key()
    env.call_json("Counter", "add", 1, key=key)
    env.call_json("Counter", "add", 2, key=key)
    assert env.call("Counter", "addThenFail", 1, key=key).status_code >= 400
    # an invocation that stays suspended-or-running, and one queued behind it
    env.send("AwakeableHolder", "hold", "some-awakeable", key=key)
    m = scrape(env)
    labels = '{handler="add",service="Counter"}'
    assert m[f"durably_invocations_started_total{labels}"] >= 2
    assert m[f"durably_invocations_completed_total{labels}"] >= 2
    assert m['durably_invocations_failed_total{handler="addThenFail",service="Counter"}'] >= 1
    assert m[f"durably_attempt_duration_seconds_count{labels}"] >= 2
    assert any(k.startswith("durably_ingress_request_duration_seconds_count") for k in m)
    ingress = sum(v for k, v in m.items()
                  if k.startswith("durably_ingress_request_duration_seconds_count"))
    assert ingress >= 4
    assert m["durably_storage_commit_duration_seconds_count"] >= 1
    assert m["durably_storage_sync_duration_seconds_count"] >= 1  # the WAL fsync, off the loop
    assert m["durably_storage_commit_batch_size_sum"] >= m["durably_storage_commit_batch_size_count"]
    # young collections run every few hundred allocations: some were timed by now
    assert m['durably_gc_pause_seconds_count{generation="0"}'] >= 1
    for gauge in ("durably_inbox_depth", "durably_invocations_suspended", "durably_timers_pending"):
        assert gauge in m
    assert all(re.match(r"^[a-z_]+(\{.*\})?$", k) for k in m)
