"""Three `durably serve --node-name` processes on one PostgreSQL: one leads (holds every
partition's lease and runs the engine), the others forward; any node answers for the
cluster; kill -9 of the leader moves the engine to a standby, and acknowledged calls made
with idempotency keys are applied exactly once across the failover."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.harness import DurablyServer, ServicesProcess, register
from tests.support.postgres import fetch, shared_cluster

pytestmark = [pytest.mark.timeout(300), pytest.mark.restart]

TTL = "2s"
NAMES = ("n1", "n2", "n3")


class Cluster:
    def __init__(self, base: Path) -> None:
        self.dsn = shared_cluster().new_database()
        self.services = ServicesProcess(["Counter"], base / "services")
        self.nodes = {
            name: DurablyServer(
                base / name, store=self.dsn,
                extra_args=["--node-name", name, "--lease-ttl", TTL],
            )
            for name in NAMES
        }

    def leader(self) -> str | None:
        rows = fetch(
            self.dsn,
            "SELECT owner FROM durably.partition_lease WHERE pid = 0 AND owner <> '' "
            "AND expires_at >= now()",
        )
        return rows[0][0] if rows else None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.services.start()
    try:
        for node in c.nodes.values():
            node.start()
        yield c
    finally:
        for node in c.nodes.values():
            node.close()
        c.services.close()


def _add(client: httpx.Client, node: DurablyServer, key: str, ik: str) -> httpx.Response:
    return client.post(
        f"{node.ingress_url}/Counter/{key}/add", json=1, headers={"idempotency-key": ik}
    )


def test_any_node_answers_for_the_cluster(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader in NAMES
    standby = next(n for n in NAMES if n != leader)
    register(cluster.nodes[standby].admin_url, cluster.services.url, use_http_11=False)
    with httpx.Client(timeout=30) as client:
        seen = [
            sorted(d["id"] for d in client.get(f"{n.admin_url}/deployments").json()["deployments"])
            for n in cluster.nodes.values()
        ]
        assert seen[0] and seen[0] == seen[1] == seen[2]
        for i, node in enumerate(cluster.nodes.values()):
            r = _add(client, node, "shared", f"any-{i}")
            assert r.status_code == 200, r.text
            assert r.json()["newValue"] == i + 1
        # a repeated idempotent request through another node is answered from the first
        again = _add(client, cluster.nodes[standby], "shared", "any-0")
        assert again.status_code == 200 and again.json()["newValue"] == 1


def test_kill_9_of_the_leader_loses_and_doubles_nothing(cluster: Cluster) -> None:
    register(cluster.nodes["n1"].admin_url, cluster.services.url, use_http_11=False)
    leader = cluster.leader()
    assert leader is not None
    order = list(NAMES)
    acknowledged = 0
    total = 40
    failover_s = None
    with httpx.Client(timeout=30) as client:
        for i in range(total):
            if i == total // 2:
                killed_at = time.monotonic()
                cluster.nodes[leader].kill()
                order.remove(leader)
            ik = f"op-{i}"
            deadline = time.monotonic() + 60
            while True:  # the same idempotency key until acknowledged: safe to retry
                node = cluster.nodes[order[(i + acknowledged) % len(order)]]
                try:
                    r = _add(client, node, "failover", ik)
                    if r.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"op {i} not acknowledged within 60 s"
                time.sleep(0.05)
            acknowledged += 1
            if i == total // 2:
                failover_s = time.monotonic() - killed_at
        final = client.post(f"{cluster.nodes[order[0]].ingress_url}/Counter/failover/get", json=None)
    assert final.status_code == 200
    assert final.json() == total == acknowledged  # every add applied once
    assert cluster.leader() in order
    print(f"\nleader {leader} killed: first call acknowledged again after {failover_s:.2f} s")


def _wait_leader(cluster: Cluster, not_: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        leader = cluster.leader()
        if leader is not None and leader != not_:
            return leader
        assert time.monotonic() < deadline, "no new leader"
        time.sleep(0.05)


def test_sigterm_of_the_leader_hands_over_at_once(cluster: Cluster) -> None:
    register(cluster.nodes["n2"].admin_url, cluster.services.url, use_http_11=False)
    leader = cluster.leader()
    assert leader is not None
    cluster.nodes[leader].stop()
    # released on the way out, not left to expire: free or already taken by another node
    rows = fetch(cluster.dsn, "SELECT DISTINCT owner FROM durably.partition_lease")
    assert leader not in {r[0] for r in rows}
    new = _wait_leader(cluster, leader)
    with httpx.Client(timeout=30) as client:
        r = _add(client, cluster.nodes[new], "handover", "h-1")
        assert r.status_code == 200 and r.json()["newValue"] == 1


def test_a_paused_leader_commits_nothing_after_its_leases_moved(cluster: Cluster) -> None:
    import signal

    register(cluster.nodes["n3"].admin_url, cluster.services.url, use_http_11=False)
    leader = cluster.leader()
    assert leader is not None
    paused = cluster.nodes[leader]
    others = [cluster.nodes[n] for n in NAMES if n != leader]
    with httpx.Client(timeout=30) as client:
        assert _add(client, paused, "pause", "p-0").status_code == 200
        assert paused.proc is not None
        paused.proc.send_signal(signal.SIGSTOP)
        try:
            new = _wait_leader(cluster, leader)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if _add(client, cluster.nodes[new], "pause", "p-1").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            paused.proc.send_signal(signal.SIGCONT)
        # the old leader finds its leases gone and stops rather than act on its memory
        assert paused.proc.wait(60) == 1
        assert "lost the leases" in paused.log_tail(200)
        final = client.post(f"{others[0].ingress_url}/Counter/pause/get", json=None)
        assert final.json() == 2


def test_a_leader_cut_off_from_postgresql_stops_and_a_standby_takes_over(
    tmp_path: Path,
) -> None:
    from tests.support.tcp_proxy import BlackholeProxy

    c = Cluster(tmp_path)
    pg = shared_cluster()
    proxy = BlackholeProxy(pg.port)
    # n1 reaches PostgreSQL only through the proxy; it starts first, so it leads
    cut_dsn = c.dsn.replace(f":{pg.port}/", f":{proxy.port}/")
    c.nodes["n1"] = DurablyServer(
        tmp_path / "n1", store=cut_dsn, extra_args=["--node-name", "n1", "--lease-ttl", TTL]
    )
    c.services.start()
    try:
        for node in c.nodes.values():
            node.start()
        assert c.leader() == "n1"
        register(c.nodes["n2"].admin_url, c.services.url, use_http_11=False)
        with httpx.Client(timeout=30) as client:
            assert _add(client, c.nodes["n2"], "cut", "c-0").status_code == 200
            proxy.blackhole()
            new = _wait_leader(c, "n1")
            deadline = time.monotonic() + 60
            while True:
                try:
                    if _add(client, c.nodes[new], "cut", "c-1").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline
                time.sleep(0.05)
            n1 = c.nodes["n1"]
            assert n1.proc is not None and n1.proc.wait(60) == 1  # self-fenced, stopped
            final = client.post(f"{c.nodes[new].ingress_url}/Counter/cut/get", json=None)
            assert final.json() == 2
    finally:
        proxy.heal()
        for node in c.nodes.values():
            node.close()
        c.services.close()
        proxy.close()
