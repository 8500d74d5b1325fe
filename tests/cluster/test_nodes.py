"""Three `durably serve --node-name --placement leader` processes on one PostgreSQL: one leads (holds every
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
                extra_args=["--node-name", name, "--lease-ttl", TTL, "--placement", "leader"],
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


def _add_until_acknowledged(
    client: httpx.Client, nodes: list[DurablyServer], key: str, ik: str, timeout: float = 60
) -> None:
    """Send the same idempotent add (to the next node each time) until one answers 200:
    what a careful caller does, and safe because of the idempotency key."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        try:
            if _add(client, nodes[attempt % len(nodes)], key, ik).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        attempt += 1
        assert time.monotonic() < deadline, f"{ik} not acknowledged within {timeout} s"
        time.sleep(0.05)


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
        # SQL introspection reads the database: the same rows through every node
        answers = [
            client.post(
                f"{n.admin_url}/query",
                json={"query": "SELECT id, target, status FROM sys_invocation "
                               "WHERE target_service_name = 'Counter' ORDER BY id"},
                headers={"accept": "application/json"},
            ).json()["rows"]
            for n in cluster.nodes.values()
        ]
        assert len(answers[0]) == 3 and answers[0] == answers[1] == answers[2], answers
        assert {r["target"] for r in answers[0]} == {"Counter/shared/add"}
        # each node's own view (GET /cluster is answered locally, as of its last round)
        deadline = time.monotonic() + 30
        while True:
            statuses = [
                client.get(f"{n.admin_url}/cluster").json() for n in cluster.nodes.values()
            ]
            if all(sorted(n["name"] for n in s["nodes"]) == list(NAMES) for s in statuses):
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.2)
        assert [s["node"] for s in statuses] == list(NAMES)
        assert {s["leader"] for s in statuses} == {leader}
        assert sorted(s["role"] for s in statuses) == ["leader", "standby", "standby"]
        # a repeated idempotent request through another node is answered from the first
        again = _add(client, cluster.nodes[standby], "shared", "any-0")
        assert again.status_code == 200 and again.json()["newValue"] == 1


def test_kill_9_of_the_leader_loses_and_doubles_nothing(cluster: Cluster) -> None:
    """Four callers add to their own counters through all nodes; the leader is killed
    while they run. Every add is retried with its idempotency key until acknowledged; in
    the end each counter equals the number of adds: none lost, none applied twice."""
    import threading

    register(cluster.nodes["n1"].admin_url, cluster.services.url, use_http_11=False)
    leader = cluster.leader()
    assert leader is not None
    survivors = [cluster.nodes[n] for n in NAMES if n != leader]
    everyone = [cluster.nodes[n] for n in NAMES]
    callers, adds = 4, 15
    done = [0] * callers
    errors: list[BaseException] = []
    killed = threading.Event()

    def caller(c: int) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                for i in range(adds):
                    nodes = survivors if killed.is_set() else everyone
                    rotated = nodes[(c + i) % len(nodes):] + nodes[: (c + i) % len(nodes)]
                    _add_until_acknowledged(client, rotated, f"load-{c}", f"load-{c}-{i}")
                    done[c] += 1
        except BaseException as e:  # reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while sum(done) < callers * adds // 3:
        assert time.monotonic() < deadline and not errors, errors
        time.sleep(0.02)
    killed_at = time.monotonic()
    cluster.nodes[leader].kill()
    killed.set()
    with httpx.Client(timeout=30) as client:  # a request sent after the kill, answered
        _add_until_acknowledged(client, survivors, "probe", "probe-1")
    failover_s = time.monotonic() - killed_at
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert done == [adds] * callers
    with httpx.Client(timeout=30) as client:
        for c in range(callers):
            final = client.post(f"{survivors[0].ingress_url}/Counter/load-{c}/get", json=None)
            assert final.status_code == 200 and final.json() == adds
    assert cluster.leader() in [n for n in NAMES if n != leader]
    print(f"\nleader {leader} killed under load: a new request acknowledged after {failover_s:.2f} s")


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
            _add_until_acknowledged(client, [cluster.nodes[new]], "pause", "p-1")
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
        tmp_path / "n1", store=cut_dsn,
        extra_args=["--node-name", "n1", "--lease-ttl", TTL, "--placement", "leader"],
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
            _add_until_acknowledged(client, [c.nodes[new]], "cut", "c-1")
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "0.0.0.0", "--store", "postgresql://u:p@127.0.0.1:1/db"], "--cluster-secret"),
        (["--advertise-address", "10.1.2.3", "--store", "postgresql://u:p@127.0.0.1:1/db"],
         "--cluster-secret"),
        ([], "needs --store postgresql://"),
        (["--store", "postgresql://u:p@127.0.0.1:1/db", "--lease-ttl", "0"], "bad --lease-ttl"),
    ],
)
def test_unsafe_or_incomplete_cluster_settings_are_refused(args: list[str], message: str) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    env.pop("DURABLY_STORE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "durably", "serve", "--node-name", "a", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
