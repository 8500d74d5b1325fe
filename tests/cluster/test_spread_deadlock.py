"""Deadlock reports across nodes under the spread placement: a cycle of exclusive calls
whose keys are on partitions of three different nodes is reported on every member, seen
the same through every node's admin API and web UI, survives its
members' partitions moving, and is cleared on every member when one of them is killed.
Real PostgreSQL, real nodes, real SDK services (the cluster of test_spread)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from tests.cluster import test_spread
from tests.cluster.test_spread import PARTITIONS, Cluster
from tests.support.postgres import fetch

from durably.ids import InvocationId, partition_of

pytestmark = [pytest.mark.timeout(400), pytest.mark.restart]

# the three-node cluster of test_spread (its services include CallChain)
cluster = test_spread.cluster


def _poll(check: Any, timeout: float = 60.0) -> Any:
    """`check()` until it returns something true; its last assertion error otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
            error: Exception | None = None
        except (AssertionError, httpx.HTTPError) as e:
            error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in time: {error}")
        time.sleep(0.2)


def _owner_of_id(cluster: Cluster, inv_id: str) -> str | None:
    pid = partition_of(InvocationId.parse(inv_id).partition_key, PARTITIONS)
    return cluster.owners().get(pid)


def _members(cluster: Cluster, a: str) -> dict[str, str]:
    """The unfinished CallChain invocations by key, once the cycle has closed (two on `a`)."""
    rows = fetch(
        cluster.dsn,
        "SELECT id, key, status FROM durably.invocation WHERE service = 'CallChain' "
        "AND status <> 'completed' ORDER BY created_at",
    )
    out: dict[str, str] = {}
    for inv_id, key, status in rows:
        out[f"{key}:queued" if status == "inboxed" and key == a else key] = inv_id
    return out


def test_a_cycle_across_three_nodes_is_reported_moved_and_cleared(cluster: Cluster) -> None:
    names = list(cluster.nodes)
    a = cluster.key_owned_by(names[0], "dl-a")
    b = cluster.key_owned_by(names[1], "dl-b")
    c = cluster.key_owned_by(names[2], "dl-c")
    nodes = list(cluster.nodes.values())
    with httpx.Client(timeout=30) as client:
        # CallChain a -> b -> c -> a, started through a node that owns none of a's partition
        r = client.post(f"{nodes[2].ingress_url}/CallChain/{a}/hop/send", json=[b, c, a])
        assert r.status_code in (200, 202), r.text
        root = r.json()["invocationId"]
        members = _poll(lambda: (m := _members(cluster, a)) and f"{a}:queued" in m and m)
        assert members[a] == root
        cycle = [members[a], members[b], members[c], members[f"{a}:queued"]]
        owners = {inv_id: _owner_of_id(cluster, inv_id) for inv_id in cycle}
        assert {owners[members[a]], owners[members[b]], owners[members[c]]} == set(names)

        def reported_everywhere() -> bool:
            # every member, asked through every node (served by its owner), names the cycle
            for inv_id in cycle:
                for node in nodes:
                    view = client.get(f"{node.admin_url}/invocations/{inv_id}").json()
                    text = view["deadlock"]
                    assert text, (inv_id, node.name, view)
                    for key in (a, b, c):
                        assert f"CallChain/{key}/hop" in text, text
                    assert "?" not in text.replace("deadlock:", ""), text  # every target named
                    assert text.count("is queued behind") == 1, text
                    for member in cycle:
                        assert member in text, text
            return True

        _poll(reported_everywhere)
        # each member's web UI page, through every node (served by its owner), shows the
        # cycle with each member linked
        for inv_id in cycle:
            for node in nodes:
                page = client.get(f"{node.admin_url}/ui/invocations/{inv_id}")
                assert page.status_code == 200 and "Deadlock" in page.text, (inv_id, node.name)
                for member in cycle:
                    assert member in page.text
        # still blocked (Restate's semantics: reported, not resolved)
        r = client.get(f"{nodes[0].ingress_url}/restate/invocation/{root}/output")
        assert r.status_code == 470, r.text

        # the middle members' node stops cleanly: their partitions move, the report stays
        moved = names[1]
        cluster.nodes[moved].stop()  # SIGTERM: it hands its partitions over
        rest = [n for n in names if n != moved]
        cluster.wait_spread(rest)
        assert _owner_of_id(cluster, members[b]) in rest
        survivors = [cluster.nodes[n] for n in rest]

        def still_reported() -> bool:
            for inv_id in cycle:
                for node in survivors:
                    view = client.get(f"{node.admin_url}/invocations/{inv_id}").json()
                    assert view["deadlock"] and f"CallChain/{b}/hop" in view["deadlock"], view
            return True

        _poll(still_reported)

        # kill the member whose partition moved: the cycle is broken, every member is cleared
        # (the others are on other nodes: told through the outbox)
        r = client.patch(f"{survivors[0].admin_url}/invocations/{members[b]}/kill")
        assert r.status_code == 200, r.text

        def cleared() -> bool:
            for inv_id in cycle:
                for node in survivors:
                    view = client.get(f"{node.admin_url}/invocations/{inv_id}").json()
                    assert view["deadlock"] is None, view
            return True

        _poll(cleared)
        # the keys are free again: the killed call failed its callers, which ended
        for key in (a, b, c):
            def free(key: str = key) -> bool:
                r = client.post(f"{survivors[1].ingress_url}/CallChain/{key}/hop", json=[])
                assert r.status_code == 200 and r.json() == key, r.text
                return True

            _poll(free)
