"""Kafka subscriptions on three nodes under the spread placement, with real PostgreSQL, a
real broker and real SDK services.

Each Kafka partition of a subscription is consumed by the owner of the cluster partition
its offset row lives in (`durably.kafka.service`): kill -9 of a consuming node in the middle
of a stream, its restart (the others hand it its share back) and a SIGTERM (it hands its
share over on the way out) must leave every record handled exactly once, and the records
of a key in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.kafka.broker import Broker
from tests.kafka.conftest import CLUSTER, KAFKA_APP
from tests.support.harness import DurablyServer, ServicesProcess, register
from tests.support.postgres import fetch, shared_cluster

from durably.ids import partition_key_for, partition_of

pytestmark = [pytest.mark.timeout(600), pytest.mark.restart]

TTL = "3s"
PARTITIONS = 64
NAMES = ("n1", "n2", "n3")


class Nodes:
    def __init__(self, base: Path) -> None:
        self.dsn = shared_cluster().new_database()
        self.services = ServicesProcess([], base / "services", app=KAFKA_APP)
        self.nodes = {
            name: DurablyServer(
                base / name, store=self.dsn,
                extra_args=["--node-name", name, "--lease-ttl", TTL, "--placement", "spread"],
            )
            for name in NAMES
        }
        self.client = httpx.Client(timeout=30)

    def live(self) -> list[DurablyServer]:
        return [n for n in self.nodes.values() if n.proc is not None and n.proc.poll() is None]

    def owners(self) -> dict[int, str]:
        rows = fetch(self.dsn, "SELECT pid, owner FROM durably.partition_lease "
                               "WHERE owner <> '' AND expires_at >= now()")
        return {r[0]: r[1] for r in rows}

    def home_owner(self, sub_id: str, topic: str, partition: int) -> str | None:
        """The node consuming that Kafka partition: the owner of its offset row's partition."""
        pid = partition_of(partition_key_for(key=f"{sub_id}/{topic}/{partition}"), PARTITIONS)
        return self.owners().get(pid)

    def ready(self, names: list[str]) -> bool:
        """Every partition is run by one of `names`."""
        total = 0
        for name in names:
            try:
                total += self.client.get(f"{self.nodes[name].admin_url}/cluster").json()[
                    "partitions_ready"]
            except (httpx.HTTPError, ValueError, KeyError):
                return False
        return total == PARTITIONS and set(self.owners().values()) <= set(names)

    def seen(self, key: str) -> list[int] | None:
        for node in self.live():
            try:
                r = self.client.post(f"{node.ingress_url}/KafkaLog/{key}/seen", json=None)
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                return list(r.json())
        return None

    def invocations(self) -> int:
        rows = fetch(self.dsn, "SELECT count(*) FROM durably.invocation "
                               "WHERE service = 'KafkaLog' AND invoked_by = 'subscription'")
        return int(rows[0][0])


def _wait(fn, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not in time"
        time.sleep(interval)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    c = Nodes(tmp_path)
    c.services.start()
    try:
        for node in c.nodes.values():
            node.start()
        _wait(lambda: c.ready(list(NAMES)), 90, "partitions spread")
        register(c.nodes["n2"].admin_url, c.services.url, use_http_11=False)
        yield c
    finally:
        for node in c.nodes.values():
            node.close()
        c.services.close()
        c.client.close()


KEYS = [f"s{i}" for i in range(24)]


def _records(start: int, stop: int) -> list[tuple[str, dict[str, int]]]:
    return [(k, {"seq": seq}) for seq in range(start, stop) for k in KEYS]


def test_kill_9_restart_and_sigterm_of_consuming_nodes_mid_stream(
    nodes: Nodes, broker: Broker
) -> None:
    admin = nodes.nodes["n1"].admin_url
    r = nodes.client.post(f"{admin}/kafka-clusters", json={
        "name": CLUSTER, "properties": {"bootstrap.servers": broker.bootstrap}})
    assert r.status_code == 201, r.text
    topic = f"spread-{int(time.time() * 1000)}"
    broker.create_topic(topic, 8)
    r = nodes.client.post(f"{nodes.nodes['n3'].admin_url}/subscriptions", json={
        "source": f"kafka://{CLUSTER}/{topic}", "sink": "service://KafkaLog/append",
        "options": {"auto.offset.reset": "earliest"}})
    assert r.status_code == 201, r.text
    sub_id = r.json()["id"]
    # every node knows the subscription once the creation was answered
    for node in nodes.nodes.values():
        subs = nodes.client.get(f"{node.admin_url}/subscriptions").json()["subscriptions"]
        assert [s["id"] for s in subs] == [sub_id]
    consumers = {p: nodes.home_owner(sub_id, topic, p) for p in range(8)}
    assert set(consumers.values()) <= set(NAMES) and None not in consumers.values()

    # a stream of 24 keys x 40 records, produced in slices while nodes die and come back
    per_key = 40
    slices = [(i, i + 2) for i in range(0, per_key, 2)]
    produced = threading.Event()

    def stream() -> None:
        for start, stop in slices:
            broker.produce(topic, _records(start, stop))
            time.sleep(0.4)
        produced.set()

    producer = threading.Thread(target=stream, daemon=True)
    producer.start()
    _wait(lambda: nodes.invocations() >= 3 * len(KEYS), 120, "first records taken")

    # kill -9 the node consuming the most Kafka partitions, mid-stream
    by_node = {n: sum(1 for o in consumers.values() if o == n) for n in NAMES}
    victim = max(by_node, key=lambda n: by_node[n])
    before = nodes.invocations()
    nodes.nodes[victim].kill()
    others = [n for n in NAMES if n != victim]
    _wait(lambda: nodes.ready(others), 60, "survivors run every partition")
    # the survivors consume the victim's Kafka partitions from their stored offsets
    _wait(lambda: nodes.invocations() > before + len(KEYS), 120, "consumption after kill -9")
    assert all(nodes.home_owner(sub_id, topic, p) in others for p in range(8))

    # it comes back: the others hand its share over while records keep arriving
    nodes.nodes[victim].start()
    _wait(lambda: nodes.ready(list(NAMES)), 90, "partitions spread again")

    # SIGTERM of another consuming node: it hands its partitions over on the way out
    stopped = next(n for n in others if any(
        nodes.home_owner(sub_id, topic, p) == n for p in range(8)))
    nodes.nodes[stopped].stop()
    remaining = [n for n in NAMES if n != stopped]
    _wait(lambda: nodes.ready(remaining), 60, "partitions taken after SIGTERM")

    _wait(produced.is_set, 240, "stream produced")
    producer.join()
    expected = list(range(per_key))
    pending = set(KEYS)

    def all_seen() -> bool:
        for key in sorted(pending):
            got = nodes.seen(key)
            if got is None:
                return False
            # never a record twice, never out of order, at any moment
            assert got == expected[: len(got)], f"{key}: {got}"
            if got == expected:
                pending.discard(key)
        return not pending

    _wait(all_seen, 300, "every record handled", interval=1.0)
    assert nodes.invocations() == per_key * len(KEYS)
    rows = fetch(nodes.dsn, "SELECT partition, \"offset\" FROM durably.kafka_offset "
                            f"WHERE subscription_id = '{sub_id}' ORDER BY partition")
    assert sum(offset + 1 for _, offset in rows) == per_key * len(KEYS), rows
