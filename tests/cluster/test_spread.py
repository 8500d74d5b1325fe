"""Spread placement: every live node runs its share of the partitions
(`durably serve --node-name N --placement spread`), with real PostgreSQL and real SDK
services. Calls, sends, delayed sends, attaches, awakeables, cancel and kill cross
partitions owned by different nodes through the outbox; kill -9 of a node under such
traffic loses and doubles nothing; partitions move when a node joins or stops."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.cluster import key_owned_by
from tests.support.harness import DurablyServer, ServicesProcess, register
from tests.support.postgres import fetch, shared_cluster

from durably.ids import partition_key_for, partition_of

pytestmark = [pytest.mark.timeout(400), pytest.mark.restart]

TTL = "3s"
PARTITIONS = 64
SERVICES = [
    "Counter", "Proxy", "AwakeableHolder", "CancelTestRunner", "CancelTestBlockingService",
    "KillTestRunner", "KillTestSingleton", "TestUtilsService", "ClientAwakeable",
    "CallChain", "Stepper",
]


def _node(base: Path, dsn: str, name: str) -> DurablyServer:
    return DurablyServer(
        base / name, store=dsn,
        extra_args=["--node-name", name, "--lease-ttl", TTL, "--placement", "spread"],
    )


class Cluster:
    def __init__(self, base: Path, names: tuple[str, ...]) -> None:
        self.base = base
        self.dsn = shared_cluster().new_database()
        self.services = ServicesProcess(SERVICES, base / "services")
        self.nodes = {name: _node(base, self.dsn, name) for name in names}

    def owners(self) -> dict[int, str]:
        rows = fetch(
            self.dsn,
            "SELECT pid, owner FROM durably.partition_lease WHERE owner <> '' "
            "AND expires_at >= now()",
        )
        return {r[0]: r[1] for r in rows}

    def owner_of_key(self, key: str) -> str | None:
        return self.owners().get(partition_of(partition_key_for(key=key), PARTITIONS))

    def key_owned_by(self, name: str, prefix: str) -> str:
        return key_owned_by(self.owners(), name, prefix, PARTITIONS)

    def wait_spread(
        self, names: list[str], timeout: float = 60, headers: dict[str, str] | None = None
    ) -> float:
        """Until every one of `names` runs an even share (±1) and nothing else holds any;
        returns how long that took."""
        started = time.monotonic()
        deadline = started + timeout
        even = PARTITIONS // len(names)
        with httpx.Client(timeout=10) as client:
            while True:
                try:
                    statuses = [
                        client.get(f"{self.nodes[n].admin_url}/cluster", headers=headers).json()
                        for n in names
                    ]
                    ready = [s["partitions_ready"] for s in statuses]
                    owners = self.owners()
                    if (sum(ready) == PARTITIONS and all(even <= r <= even + 1 for r in ready)
                            and set(owners.values()) == set(names)
                            and len(owners) == PARTITIONS):
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "partitions not spread in time"
                time.sleep(0.1)


@contextlib.contextmanager
def running(c: Cluster) -> Iterator[Cluster]:
    """The services and the nodes started, the partitions spread, the services registered
    (tests/kafka/test_spread.py runs its cluster this way too)."""
    c.services.launch()
    try:
        for node in c.nodes.values():  # all at once: none has to hand partitions over
            node.launch()
        for node in c.nodes.values():
            node.wait_healthy()
        c.services.wait_listening()
        c.wait_spread(list(c.nodes))
        register(c.nodes["n2"].admin_url, c.services.url, use_http_11=False)
        yield c
    finally:
        for node in c.nodes.values():
            node.close()
        c.services.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running(Cluster(tmp_path, ("n1", "n2", "n3"))) as c:
        yield c


def _proxy(service: str, handler: str, message: bytes, key: str | None = None,
           **extra: object) -> dict[str, object]:
    req: dict[str, object] = {
        "serviceName": service, "handlerName": handler, "message": list(message),
    }
    if key is not None:
        req["virtualObjectKey"] = key
    req.update(extra)
    return req


def _get(client: httpx.Client, node: DurablyServer, key: str) -> int:
    r = client.post(f"{node.ingress_url}/Counter/{key}/get", json=None)
    assert r.status_code == 200, r.text
    return int(r.json())


def _json_or_none(r: httpx.Response) -> object:
    """The answer's JSON; None while there is none yet (the handler answered nothing because
    the awakeable is not created yet, or a node answered 503 while partitions moved)."""
    if r.status_code != 200 or not r.content:
        return None
    return r.json()


def _poll(fn, timeout: float = 60.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)


def test_partitions_spread_and_every_node_answers(cluster: Cluster) -> None:
    nodes = list(cluster.nodes.values())
    with httpx.Client(timeout=30) as client:
        # the registry written through n2 is seen by every node within a second or so
        _poll(lambda: all(
            client.get(f"{n.admin_url}/deployments").json()["deployments"] for n in nodes))
        for owner in cluster.nodes:
            key = cluster.key_owned_by(owner, "spread")
            for i, node in enumerate(nodes):
                r = client.post(f"{node.ingress_url}/Counter/{key}/add", json=1,
                                headers={"idempotency-key": f"{key}-{i}"})
                assert r.status_code == 200, r.text
                assert r.json()["newValue"] == i + 1
            again = client.post(f"{nodes[2].ingress_url}/Counter/{key}/add", json=1,
                                headers={"idempotency-key": f"{key}-0"})
            assert again.status_code == 200 and again.json()["newValue"] == 1
            assert _get(client, nodes[0], key) == 3
        # each node's commits record their sequence on its own row, never on the shared
        # single-writer row (whose lock would make the nodes' COMMITs wait for each other)
        assert fetch(cluster.dsn, "SELECT seq FROM durably.writer") == [(0,)]
        seqs = fetch(cluster.dsn, "SELECT writer_seq FROM durably.node WHERE NOT stopped")
        assert len(seqs) == 3 and all(s[0] > 0 for s in seqs), seqs
        # the rows are where their owner wrote them; every node's SQL sees all of them
        for node in nodes:
            r = client.post(f"{node.admin_url}/query", json={
                "query": "SELECT count(*) AS n FROM sys_invocation "
                         "WHERE target_service_name = 'Counter'"})
            assert r.status_code == 200, r.text


def test_calls_sends_and_delayed_sends_cross_partitions(cluster: Cluster) -> None:
    nodes = list(cluster.nodes.values())
    with httpx.Client(timeout=60) as client:
        for node_name, node in cluster.nodes.items():
            for owner in cluster.nodes:
                if owner == node_name:
                    continue
                key = cluster.key_owned_by(owner, f"x-{node_name}")
                # a call from a Proxy invocation (placed on `node`'s own partitions) to an
                # object on `owner`'s partition, answered back through the outbox
                r = client.post(f"{node.ingress_url}/Proxy/call",
                                json=_proxy("Counter", "add", b"5", key=key))
                assert r.status_code == 200, r.text
                assert json.loads(bytes(r.json()))["newValue"] == 5
                # a one-way send and a delayed send
                r = client.post(f"{node.ingress_url}/Proxy/oneWayCall",
                                json=_proxy("Counter", "add", b"1", key=key))
                assert r.status_code == 200, r.text
                r = client.post(f"{node.ingress_url}/Proxy/oneWayCall",
                                json=_proxy("Counter", "add", b"10", key=key, delayMillis=1500))
                assert r.status_code == 200, r.text
                _poll(lambda key=key: _get(client, nodes[0], key) == 16)
        # object to object: a chain of calls over keys on each node's partitions, the
        # answers coming back the same way
        chain = [cluster.key_owned_by(n, f"chain{i}")
                 for i, n in enumerate((*cluster.nodes, *cluster.nodes))]
        r = client.post(f"{nodes[1].ingress_url}/CallChain/{chain[0]}/hop", json=chain[1:])
        assert r.status_code == 200, r.text
        assert r.json() == ",".join(chain)
        # attach from a handler: Stepper/attachTo runs on the receiving node's partitions,
        # the invocation it waits for on another node's
        r = client.post(f"{nodes[0].ingress_url}/Stepper/steps/send",
                        json={"name": "s", "sleep_ms": 1000})
        assert r.status_code in (200, 202), r.text
        steps = r.json()["invocationId"]
        r = client.post(f"{nodes[2].ingress_url}/Stepper/attachTo", json=steps)
        assert r.status_code == 200, r.text
        assert r.json() == ["s-1", "s-2"]
        # the outbox is empty once everything was delivered
        _poll(lambda: fetch(cluster.dsn, "SELECT count(*) FROM durably.outbox")[0][0] == 0)


def test_attach_and_awakeables_through_another_node(cluster: Cluster) -> None:
    nodes = list(cluster.nodes.values())
    names = list(cluster.nodes)
    with httpx.Client(timeout=60) as client:
        for resolve_from_handler in (False, True):
            key = cluster.key_owned_by(names[0], f"wait-{resolve_from_handler}")
            holder = cluster.key_owned_by(names[1], f"holder-{resolve_from_handler}")
            r = client.post(f"{nodes[1].ingress_url}/ClientAwakeable/{key}/wait/send")
            assert r.status_code in (200, 202), r.text
            inv_id = r.json()["invocationId"]
            awakeable = _poll(lambda key=key: _json_or_none(client.post(
                f"{nodes[2].ingress_url}/ClientAwakeable/{key}/awakeableId")))
            # attach through a node that does not own the invocation: it waits there...
            answer: dict[str, httpx.Response] = {}

            def attach(inv_id: str = inv_id, answer: dict[str, httpx.Response] = answer) -> None:
                with httpx.Client(timeout=60) as c:
                    answer["r"] = c.get(
                        f"{nodes[2].ingress_url}/restate/invocation/{inv_id}/attach")

            t = threading.Thread(target=attach)
            t.start()
            if resolve_from_handler:
                # ...until a handler on a partition of another node resolves the awakeable
                r = client.post(f"{nodes[0].ingress_url}/AwakeableHolder/{holder}/hold",
                                json=awakeable)
                assert r.status_code == 200, r.text
                r = client.post(f"{nodes[2].ingress_url}/AwakeableHolder/{holder}/unlock",
                                json="from a handler")
            else:
                # ...until the awakeable is resolved through a third node's ingress
                r = client.post(f"{nodes[1].ingress_url}/restate/awakeables/{awakeable}/resolve",
                                json="from the ingress")
            assert r.status_code in (200, 202), r.text
            t.join(60)
            expected = "from a handler" if resolve_from_handler else "from the ingress"
            assert answer["r"].status_code == 200, answer["r"].text
            assert answer["r"].json() == expected
            # the output, read through each node
            for node in nodes:
                r = client.get(f"{node.ingress_url}/restate/invocation/{inv_id}/output")
                assert r.status_code == 200 and r.json() == expected, r.text


def test_kill_and_cancel_propagate_across_partitions(cluster: Cluster) -> None:
    nodes = list(cluster.nodes.values())
    names = list(cluster.nodes)
    with httpx.Client(timeout=60) as client:
        parent_key = cluster.key_owned_by(names[0], "parent")
        child_key = cluster.key_owned_by(names[1], "child")
        counter_key = cluster.key_owned_by(names[0], "first-child")
        # Proxy (on nodes[2]) calls Counter/add on names[0]'s partition, which answers,
        # and CancelTestBlockingService/child/block on names[1]'s: it holds an awakeable
        # and waits
        r = client.post(f"{nodes[2].ingress_url}/Proxy/manyCalls/send", json=[
            {"proxyRequest": _proxy("Counter", "add", b"1", key=counter_key),
             "awaitAtTheEnd": True},
            {"proxyRequest": _proxy("CancelTestBlockingService", "block", b'"AWAKEABLE"',
                                    key=child_key),
             "awaitAtTheEnd": True},
        ])
        assert r.status_code in (200, 202), r.text
        parent = r.json()["invocationId"]

        def child_blocked() -> bool:
            return client.post(f"{nodes[0].ingress_url}/AwakeableHolder/{child_key}/hasAwakeable",
                               json=None).json() is True

        _poll(child_blocked)
        rows = _poll(lambda: fetch(
            cluster.dsn,
            "SELECT id FROM durably.invocation WHERE service = 'CancelTestBlockingService' "
            f"AND key = '{child_key}' AND status <> 'completed'"))
        child = rows[0][0]

        def remote_calls() -> list[str]:
            extra = fetch(cluster.dsn, f"SELECT extra FROM durably.invocation WHERE id = '{parent}'")
            return [c[0] for c in json.loads(bytes(extra[0][0] or b"{}")).get("remote_calls", [])]

        # the parent's row keeps the callees it waits for on other partitions (to kill them
        # with it); the counter's answer arrived and took it off the list
        _poll(lambda: remote_calls() == [child])
        # kill the parent through a node that owns neither: the child is killed too
        r = client.patch(f"{nodes[0].admin_url}/invocations/{parent}/kill")
        assert r.status_code in (200, 202), r.text

        def child_done() -> bool:
            got = fetch(cluster.dsn, f"SELECT status FROM durably.invocation WHERE id = '{child}'")
            return bool(got) and got[0][0] == "completed"

        _poll(child_done)
        del parent_key
        # cancel: CancelTestRunner/key/startTest calls the blocking service on the same key
        # (same partition); a cancel sent to it through another node's admin API reaches it
        key = cluster.key_owned_by(names[1], "cancel")
        r = client.post(f"{nodes[0].ingress_url}/CancelTestRunner/{key}/startTest/send",
                        json="AWAKEABLE")
        assert r.status_code in (200, 202), r.text
        runner = r.json()["invocationId"]
        _poll(lambda: client.post(f"{nodes[2].ingress_url}/AwakeableHolder/{key}/hasAwakeable",
                                  json=None).json() is True)
        r = client.patch(f"{nodes[2].admin_url}/invocations/{runner}/cancel")
        assert r.status_code in (200, 202), r.text
        _poll(lambda: client.post(f"{nodes[0].ingress_url}/CancelTestRunner/{key}/verifyTest",
                                  json=None).json() is True)


def test_kill_9_of_a_node_loses_and_doubles_nothing(cluster: Cluster) -> None:
    """Callers add to counters on every node's partitions through Proxy calls (a hop
    between partitions for most of them) and directly, each add retried with its
    idempotency key until acknowledged; one node is killed while they run. In the end each
    counter equals its number of adds: none lost, none applied twice."""
    names = list(cluster.nodes)
    victim = names[1]
    survivors = [cluster.nodes[n] for n in names if n != victim]
    everyone = [cluster.nodes[n] for n in names]
    keys = [cluster.key_owned_by(n, f"load-{n}") for n in names]
    callers, adds = 6, 12
    done = [0] * callers
    errors: list[BaseException] = []
    killed = threading.Event()

    def add(client: httpx.Client, node: DurablyServer, c: int, i: int) -> bool:
        key = keys[c % len(keys)]
        ik = f"add-{c}-{i}"
        try:
            if c % 2:
                r = client.post(f"{node.ingress_url}/Counter/{key}/add", json=1,
                                headers={"idempotency-key": ik})
            else:
                # through a Proxy invocation; the inner call is idempotent too, so the
                # proxy invocation and the add each happen once per key
                r = client.post(f"{node.ingress_url}/Proxy/call", headers={"idempotency-key": ik},
                                json=_proxy("Counter", "add", b"1", key=key, idempotencyKey=ik))
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def caller(c: int) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                for i in range(adds):
                    deadline = time.monotonic() + 90
                    attempt = c + i
                    while True:
                        nodes = survivors if killed.is_set() else everyone
                        if add(client, nodes[attempt % len(nodes)], c, i):
                            break
                        attempt += 1
                        assert time.monotonic() < deadline, f"add {c}/{i} not acknowledged"
                        time.sleep(0.1)
                    done[c] += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while sum(done) < callers * adds // 3:
        assert time.monotonic() < deadline and not errors, errors
        time.sleep(0.02)
    killed_at = time.monotonic()
    cluster.nodes[victim].kill()
    killed.set()
    moved = cluster.wait_spread([n for n in names if n != victim], timeout=90)
    moved = time.monotonic() - killed_at
    for t in threads:
        t.join(200)
    assert not errors, errors
    assert done == [adds] * callers
    expected = {k: 0 for k in keys}
    for c in range(callers):
        expected[keys[c % len(keys)]] += adds
    with httpx.Client(timeout=30) as client:
        for key, n in expected.items():
            assert _get(client, survivors[0], key) == n, key
    print(f"\nnode {victim} killed under load (TTL {TTL}): its partitions ran on the others "
          f"{moved:.2f} s after the kill; the load finished "
          f"{time.monotonic() - killed_at:.2f} s after it")


def test_rebalance_when_a_node_joins_and_when_one_stops(tmp_path: Path) -> None:
    c = Cluster(tmp_path, ("n1", "n2"))
    c.services.start()
    try:
        for name in ("n1", "n2"):
            c.nodes[name].start()
        c.wait_spread(["n1", "n2"])
        register(c.nodes["n1"].admin_url, c.services.url, use_http_11=False)
        keys = [c.key_owned_by(n, "r") for n in ("n1", "n2")]
        with httpx.Client(timeout=60) as client:
            for key in keys:
                r = client.post(f"{c.nodes['n1'].ingress_url}/Counter/{key}/add", json=1)
                assert r.status_code == 200, r.text
            # a third node joins: the others hand it a third of the partitions
            c.nodes["n3"] = _node(tmp_path, c.dsn, "n3")
            c.nodes["n3"].start()
            joined = c.wait_spread(["n1", "n2", "n3"])
            moved_key = c.key_owned_by("n3", "r")
            for key in [*keys, moved_key]:
                r = client.post(f"{c.nodes['n3'].ingress_url}/Counter/{key}/add", json=1)
                assert r.status_code == 200, r.text
            # n1 stops (SIGTERM): it hands its partitions over at once
            stopped_at = time.monotonic()
            c.nodes["n1"].stop()
            c.wait_spread(["n2", "n3"])
            left = time.monotonic() - stopped_at
            for key in keys:
                assert _get(client, c.nodes["n2"], key) == 2
            print(f"\nrebalance: a joining node ran its share after {joined:.2f} s, "
                  f"the partitions of a stopped node ran elsewhere after {left:.2f} s")
    finally:
        for node in c.nodes.values():
            node.close()
        c.services.close()


def test_messages_flow_again_after_a_node_was_cut_off_from_postgresql(tmp_path: Path) -> None:
    """n1 reaches PostgreSQL through a proxy that black-holes its bytes for longer than the
    lease TTL: n1, idle, loses its leases with nothing unsaved and keeps running; healed,
    it takes its share back. Messages between its partitions and n2's must flow again:
    its outbox reader's connection, whose statement was swallowed by the cut, must not
    keep it waiting forever (the checker once found callers suspended for good so)."""
    from tests.support.tcp_proxy import BlackholeProxy

    c = Cluster(tmp_path, ("n1", "n2"))
    pg = shared_cluster()
    proxy = BlackholeProxy(pg.port)
    c.nodes["n1"] = _node(tmp_path, c.dsn.replace(f":{pg.port}/", f":{proxy.port}/"), "n1")
    n1, n2 = c.nodes["n1"], c.nodes["n2"]
    c.services.start()
    try:
        for node in (n1, n2):
            node.start()
        c.wait_spread(["n1", "n2"])
        register(n2.admin_url, c.services.url, use_http_11=False)
        with httpx.Client(timeout=30) as client:
            proxy.blackhole()
            try:
                # n2 takes every partition once n1's leases expire; n1 notices it lost them
                _poll(lambda: set(c.owners().values()) == {"n2"} and len(c.owners()) == 64)
                _poll(lambda: client.get(f"{n1.admin_url}/cluster").json()
                      ["partitions_ready"] == 0)
                time.sleep(1.0)  # a poll of n1's outbox reader is swallowed by the cut
            finally:
                proxy.heal()
            assert n1.proc is not None and n1.proc.poll() is None, "n1 stopped"
            c.wait_spread(["n1", "n2"], timeout=90)
            on_n1, on_n2 = c.key_owned_by("n1", "cut"), c.key_owned_by("n2", "cut")
            with httpx.Client(timeout=90) as slow:
                for name, key in (("n2", on_n1), ("n1", on_n2)):
                    # a Proxy invocation on the receiving node's partitions calls an object
                    # on the other node's: the invoke and the answer cross both ways
                    try:
                        r = slow.post(f"{c.nodes[name].ingress_url}/Proxy/call",
                                      json=_proxy("Counter", "add", b"2", key=key))
                    except httpx.ReadTimeout:
                        raise AssertionError(
                            f"a call from {name} to {key} never completed") from None
                    assert r.status_code == 200, r.text
                    assert json.loads(bytes(r.json()))["newValue"] == 2
    finally:
        for node in c.nodes.values():
            node.close()
        c.services.close()
        proxy.close()


def test_a_forwarded_request_keeps_the_callers_token(tmp_path: Path) -> None:
    """The ingress token is checked by the node that receives the request and again by
    the owner it is forwarded to: the caller's Authorization header goes along."""
    c = Cluster(tmp_path, ())
    tokens = ["--ingress-token", "in-secret", "--admin-token", "admin-secret"]
    for name in ("n1", "n2"):
        c.nodes[name] = DurablyServer(
            tmp_path / name, store=c.dsn,
            extra_args=["--node-name", name, "--lease-ttl", TTL, "--placement", "spread",
                        *tokens],
        )
    c.services.start()
    try:
        for node in c.nodes.values():
            node.start()
        admin = {"authorization": "Bearer admin-secret"}
        c.wait_spread(["n1", "n2"], headers=admin)
        with httpx.Client(timeout=60) as client:
            r = client.post(f"{c.nodes['n1'].admin_url}/deployments", headers=admin,
                            json={"uri": c.services.url, "use_http_11": False})
            assert r.status_code in (200, 201), r.text
            key = c.key_owned_by("n2", "token")
            url = f"{c.nodes['n1'].ingress_url}/Counter/{key}/add"
            assert client.post(url, json=1).status_code == 401
            r = client.post(url, json=1, headers={"authorization": "Bearer in-secret"})
            assert r.status_code == 200, r.text
            assert r.json()["newValue"] == 1
            # an admin action on an invocation of n2's partition, sent to n1
            inv = fetch(c.dsn, f"SELECT id FROM durably.invocation WHERE key = '{key}'")[0][0]
            r = client.get(f"{c.nodes['n1'].admin_url}/invocations/{inv}", headers=admin)
            assert r.status_code == 200, r.text
    finally:
        for node in c.nodes.values():
            node.close()
        c.services.close()


def test_suspended_invocations_do_not_delay_a_lone_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The busy-commit delay waits for company only while several attempts run: sleeping
    (suspended) invocations held by the node do not count, so a lone caller's commits go
    out at once. The delay is set to ten minutes, which any delayed commit would outlast."""
    monkeypatch.setenv("DURABLY_COMMIT_DELAY_MS", "600000")
    c = Cluster(tmp_path, ("n1",))
    c.services.start()
    try:
        c.nodes["n1"].start()
        c.wait_spread(["n1"])
        node = c.nodes["n1"]
        # request/response: the SDK suspends an invocation as soon as it sleeps
        register(node.admin_url, c.services.url, use_http_11=True)
        with httpx.Client(timeout=60) as client:
            sleepers = []
            for i in range(5):
                r = client.post(f"{node.ingress_url}/Stepper/steps/send",
                                json={"name": f"s{i}", "sleep_ms": 3_600_000})
                assert r.status_code == 202, r.text
                sleepers.append(r.json()["invocationId"])

            def suspended() -> bool:
                return all(
                    client.get(f"{node.admin_url}/invocations/{inv}").json().get("status")
                    == "suspended" for inv in sleepers
                )

            _poll(suspended)
            for n in range(1, 4):
                r = client.post(f"{node.ingress_url}/Counter/lone/add", json=1)
                assert r.status_code == 200, r.text
                assert r.json()["newValue"] == n
    finally:
        for node in c.nodes.values():
            node.close()
        c.services.close()


def test_a_caller_waiting_through_a_lost_and_retaken_partition_gets_its_answer(
    tmp_path: Path,
) -> None:
    """A caller waits on n1 for a workflow of n1's partitions; n1, cut off from PostgreSQL
    past its lease, drops its partitions (nothing unsaved, it keeps running), so the wait
    ends with "partition moved" and the request becomes an attach to the invocation at
    its owner. Healed, n1 takes the partitions back before that attach finds another
    owner, and serves it itself. Its wait for the caller's disconnect once read a body-less
    `receive` that never blocked: n1's event loop spun for good and answered nothing more
    (the checker's short run: a node up but deaf to health checks after a takeover)."""
    from tests.cluster.checker.run import SERVICES_APP
    from tests.support.tcp_proxy import BlackholeProxy

    pg = shared_cluster()
    dsn = pg.new_database()
    proxy = BlackholeProxy(pg.port)
    n1 = DurablyServer(
        tmp_path / "n1", store=dsn.replace(f":{pg.port}/", f":{proxy.port}/"),
        extra_args=["--node-name", "n1", "--lease-ttl", "2s", "--placement", "spread"],
    )
    services = ServicesProcess([], tmp_path / "services", app=SERVICES_APP)
    answers: list[httpx.Response | BaseException] = []
    services.start()
    try:
        n1.start()
        register(n1.admin_url, services.url, use_http_11=False)
        with httpx.Client(timeout=10) as client:
            _poll(lambda: client.get(f"{n1.admin_url}/cluster").json()["partitions_ready"]
                  == PARTITIONS)

            def call() -> None:
                try:
                    with httpx.Client(timeout=180) as slow:
                        answers.append(slow.post(
                            f"{n1.ingress_url}/CheckFlow/wf1/run",
                            json={"key": "k1", "token": "t1", "ms": 12_000},
                        ))
                except BaseException as e:  # the assertion below names it
                    answers.append(e)

            caller = threading.Thread(target=call, daemon=True)
            caller.start()
            # the workflow sleeps: its input, first `ctx.run` and sleep are committed
            _poll(lambda: fetch(dsn, "SELECT count(*) FROM durably.journal j JOIN "
                                     "durably.invocation i ON i.id = j.invocation_id "
                                     "WHERE i.service = 'CheckFlow'")[0][0] >= 3)
            time.sleep(1.0)  # (nothing of it on its way to the database when cut)
            proxy.blackhole()
            try:
                _poll(lambda: client.get(f"{n1.admin_url}/cluster").json()
                      ["partitions_ready"] == 0)
            finally:
                proxy.heal()
            assert n1.proc is not None and n1.proc.poll() is None, "n1 stopped"

            def ready() -> int:
                try:
                    return int(client.get(f"{n1.admin_url}/cluster").json()["partitions_ready"])
                except httpx.TimeoutException:
                    raise AssertionError("n1 is up but answers nothing any more") from None

            # n1 takes its partitions back and keeps answering
            _poll(lambda: ready() == PARTITIONS, timeout=90)
            n1.wait_healthy(60)
        caller.join(180)
        assert answers, "the caller got no answer"
        answer = answers[0]
        assert isinstance(answer, httpx.Response), repr(answer)
        assert answer.status_code == 200, answer.text
        assert answer.json()["seq"] == 0
    finally:
        n1.close()
        services.close()
        proxy.close()


def test_a_request_forwarded_by_a_stopping_node_is_answered_503(tmp_path: Path) -> None:
    """A node stopped (SIGTERM) while a request it forwarded still waits at the owner:
    the caller gets 503 "stopping" (retry; with an idempotency key the retry attaches to the
    same invocation), as from a stopping single server, not the HTTP server's bare 500 for
    a cancelled request (the checker's long run counted 109 such 500s)."""
    with running(Cluster(tmp_path, ("n1", "n2"))) as c:
        key = c.key_owned_by("n2", "stopping")
        answer: list[httpx.Response | BaseException] = []

        def wait() -> None:  # waits until the awakeable is resolved: never, here
            try:
                with httpx.Client(timeout=120) as slow:
                    answer.append(slow.post(
                        f"{c.nodes['n1'].ingress_url}/ClientAwakeable/{key}/wait",
                        headers={"idempotency-key": "stopping-1"},
                    ))
            except BaseException as e:  # the assertion below names it
                answer.append(e)

        caller = threading.Thread(target=wait, daemon=True)
        caller.start()
        with httpx.Client(timeout=10) as client:
            # the invocation runs at n2: the request is on its way through n1
            _poll(lambda: _json_or_none(client.post(
                f"{c.nodes['n2'].ingress_url}/ClientAwakeable/{key}/awakeableId")))
        c.nodes["n1"].stop()
        caller.join(120)
        assert answer, "the caller got no answer"
        got = answer[0]
        assert isinstance(got, httpx.Response), repr(got)
        assert got.status_code == 503, got.text
        assert "stopping" in got.text
        # the retry, through the node still up, attaches to the same invocation
        with httpx.Client(timeout=10) as client:
            r = client.post(f"{c.nodes['n2'].ingress_url}/ClientAwakeable/{key}/wait/send",
                            headers={"idempotency-key": "stopping-1"})
            assert r.status_code in (200, 202), r.text
