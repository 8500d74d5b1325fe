"""Kafka subscriptions on three nodes under the spread placement, with real PostgreSQL, a
real broker and real SDK services.

Each Kafka partition of a subscription is consumed by the owner of the cluster partition
its offset row lives in (`durably.kafka.service`): kill -9 of a consuming node in the middle
of a stream, its restart (the others hand it its share back) and a SIGTERM (it hands its
share over on the way out) must leave every record handled exactly once, and the records
of a key in order."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
from tests.cluster.test_spread import PARTITIONS, TTL, Cluster, running
from tests.kafka.broker import Broker
from tests.kafka.conftest import CLUSTER, KAFKA_APP
from tests.support.harness import DurablyServer, ServicesProcess, register
from tests.support.postgres import fetch

from durably.ids import partition_key_for, partition_of

pytestmark = [
    pytest.mark.timeout(600), pytest.mark.restart,
    pytest.mark.skipif(os.environ.get("DURABLY_TEST_TARGET", "durably") != "durably",
                       reason="durably's own cluster (Restate's clusters are not compared)"),
]

NAMES = ("n1", "n2", "n3")


class Nodes(Cluster):
    """Three spread nodes on a new database of the shared PostgreSQL, and the Kafka tests'
    services (bench/kafka_failover.py uses them too)."""

    def __init__(self, base: Path, extra_args: list[str], ttl: str = TTL) -> None:
        super().__init__(base, NAMES)
        self.services = ServicesProcess([], base / "services", app=KAFKA_APP)
        self.nodes = {
            name: DurablyServer(
                base / name, store=self.dsn,
                extra_args=["--node-name", name, "--lease-ttl", ttl, "--placement", "spread",
                            *extra_args],
            )
            for name in NAMES
        }
        self.client = httpx.Client(timeout=30)

    def live(self) -> list[DurablyServer]:
        return [n for n in self.nodes.values() if n.proc is not None and n.proc.poll() is None]

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


def _offsets(nodes: Nodes, sub_id: str) -> dict[int, int]:
    rows = fetch(nodes.dsn, "SELECT partition, \"offset\" FROM durably.kafka_offset "
                            f"WHERE subscription_id = '{sub_id}'")
    return {p: o for p, o in rows}


def _wait(fn, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not in time"
        time.sleep(interval)


@pytest.fixture
def nodes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Nodes]:
    with running(Nodes(tmp_path, list(getattr(request, "param", [])))) as c:
        try:
            yield c
        finally:
            c.client.close()


KEYS = [f"s{i}" for i in range(24)]


def _subscribe(nodes: Nodes, broker: Broker, partitions: int) -> tuple[str, str]:
    """A Kafka cluster and a subscription of KafkaLog/append to a new topic, created
    through two different nodes; (topic, subscription id)."""
    r = nodes.client.post(f"{nodes.nodes['n1'].admin_url}/kafka-clusters", json={
        "name": CLUSTER, "properties": {"bootstrap.servers": broker.bootstrap}})
    assert r.status_code == 201, r.text
    topic = f"spread-{uuid.uuid4().hex[:10]}"
    broker.create_topic(topic, partitions)
    r = nodes.client.post(f"{nodes.nodes['n3'].admin_url}/subscriptions", json={
        "source": f"kafka://{CLUSTER}/{topic}", "sink": "service://KafkaLog/append",
        "options": {"auto.offset.reset": "earliest"}})
    assert r.status_code == 201, r.text
    sub_id: str = r.json()["id"]
    # every node knows the subscription once the creation was answered
    for node in nodes.nodes.values():
        subs = nodes.client.get(f"{node.admin_url}/subscriptions").json()["subscriptions"]
        assert [s["id"] for s in subs] == [sub_id]
    return topic, sub_id


def _records(start: int, stop: int) -> list[tuple[str, dict[str, int]]]:
    return [(k, {"seq": seq}) for seq in range(start, stop) for k in KEYS]


class Stream:
    """Records over 24 keys, produced one per key every 0.2 s until `end()`, while nodes
    die and come back; `check()` then wants every record handled once, in order per key."""

    def __init__(self, nodes: Nodes, broker: Broker, topic: str) -> None:
        self.nodes, self.broker, self.topic = nodes, broker, topic
        self.per_key = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set() and self.per_key < 400:
            self.broker.produce(self.topic, _records(self.per_key, self.per_key + 1))
            self.per_key += 1
            time.sleep(0.2)

    def more(self, what: str) -> None:
        """Until records produced after this point were taken."""
        target = (self.per_key + 2) * len(KEYS)
        _wait(lambda: self.nodes.invocations() >= target, 120, f"consumption {what}")

    def end(self) -> None:
        assert self.thread.is_alive()  # it was still producing through everything before
        self.done.set()
        self.thread.join()

    def check(self, sub_id: str) -> None:
        expected = list(range(self.per_key))
        pending = set(KEYS)

        def all_seen() -> bool:
            for key in sorted(pending):
                got = self.nodes.seen(key)
                if got is None:
                    return False
                # never a record twice, never out of order, at any moment
                assert got == expected[: len(got)], f"{key}: {got}"
                if got == expected:
                    pending.discard(key)
            return not pending

        _wait(all_seen, 300, "every record handled", interval=1.0)
        assert self.nodes.invocations() == self.per_key * len(KEYS)
        offsets = _offsets(self.nodes, sub_id)
        assert sum(offset + 1 for offset in offsets.values()) == self.per_key * len(KEYS), offsets


def _metrics(nodes: Nodes, name: str) -> tuple[list[tuple[dict[str, str], float]],
                                                dict[str, float]]:
    """A node's durably_kafka_consumer_lag series and its durably_kafka_parked_records by
    node label."""
    text = nodes.client.get(f"{nodes.nodes[name].admin_url}/metrics").text
    lag, parked = [], {}
    for m in re.finditer(r'^(durably_kafka_consumer_lag|durably_kafka_parked_records)'
                         r'\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if m.group(1) == "durably_kafka_consumer_lag":
            lag.append((labels, float(m.group(3))))
        else:
            parked[labels["node"]] = float(m.group(3))
    return lag, parked


def _consumers(nodes: Nodes, sub_id: str, topic: str, n: int) -> dict[int, str | None]:
    return {p: nodes.home_owner(sub_id, topic, p) for p in range(n)}


def _busiest(consumers: dict[int, str | None]) -> str:
    return max(NAMES, key=lambda n: sum(1 for o in consumers.values() if o == n))


def test_kill_9_restart_and_sigterm_of_consuming_nodes_mid_stream(
    nodes: Nodes, broker: Broker
) -> None:
    topic, sub_id = _subscribe(nodes, broker, 8)
    consumers = _consumers(nodes, sub_id, topic, 8)
    assert set(consumers.values()) <= set(NAMES) and None not in consumers.values()
    stream = Stream(nodes, broker, topic)
    stream.more("at start")

    # kill -9 the node consuming the most Kafka partitions, mid-stream
    victim = _busiest(consumers)
    before = nodes.invocations()
    theirs = [p for p, o in consumers.items() if o == victim]
    killed_at = time.monotonic()
    nodes.nodes[victim].kill()
    offsets = _offsets(nodes, sub_id)  # read once it is gone (a commit it sent may land)
    others = [n for n in NAMES if n != victim]
    # each of its Kafka partitions is taken further by a survivor (the time is reported)
    _wait(lambda: all(_offsets(nodes, sub_id).get(p, -1) > offsets.get(p, -1) for p in theirs),
          120, "the victim's Kafka partitions consumed again")
    print(f"kafka consumption of {len(theirs)} partitions resumed "
          f"{time.monotonic() - killed_at:.2f} s after kill -9 (lease TTL {TTL})")
    _wait(lambda: nodes.ready(others), 60, "survivors run every partition")
    # the survivors consume the victim's Kafka partitions from their stored offsets
    stream.more("after kill -9")
    assert nodes.invocations() > before
    assert all(nodes.home_owner(sub_id, topic, p) in others for p in range(8))

    # it comes back: the others hand its share over while records keep arriving
    nodes.nodes[victim].start()
    _wait(lambda: nodes.ready(list(NAMES)), 90, "partitions spread again")
    stream.more("after the restart")

    # SIGTERM of another consuming node: it hands its partitions over on the way out
    stopped = next(n for n in others if any(
        nodes.home_owner(sub_id, topic, p) == n for p in range(8)))
    nodes.nodes[stopped].stop()
    remaining = [n for n in NAMES if n != stopped]
    _wait(lambda: nodes.ready(remaining), 60, "partitions taken after SIGTERM")
    stream.more("after SIGTERM")
    stream.end()
    stream.check(sub_id)


def test_a_consuming_node_paused_past_its_ttl_takes_nothing_twice(
    nodes: Nodes, broker: Broker
) -> None:
    topic, sub_id = _subscribe(nodes, broker, 4)
    stream = Stream(nodes, broker, topic)
    stream.more("at start")
    victim = _busiest(_consumers(nodes, sub_id, topic, 4))
    node = nodes.nodes[victim]
    assert node.proc is not None
    # SIGSTOP while it consumes; the others take its partitions when its leases expire
    node.proc.send_signal(signal.SIGSTOP)
    others = [n for n in NAMES if n != victim]
    try:
        _wait(lambda: nodes.ready(others), 60, "the others run every partition")
        stream.more("while it is paused")
    finally:
        node.proc.send_signal(signal.SIGCONT)
    # on waking its commits are refused: it drops the partitions, or stops (exit 1) if it
    # had taken records meanwhile; started again then, as an operator's supervisor would
    def settled() -> bool:
        if node.proc is not None and node.proc.poll() is not None:
            node.start()
        return nodes.ready(list(NAMES))

    _wait(settled, 120, "partitions spread again")
    stream.more("after waking")
    stream.end()
    stream.check(sub_id)


@pytest.mark.parametrize("nodes", [["--kafka-max-in-flight", "4"]], indirect=True)
def test_parked_records_and_backpressure_across_nodes(nodes: Nodes, broker: Broker) -> None:
    topic, sub_id = _subscribe(nodes, broker, 1)
    consumer = nodes.home_owner(sub_id, topic, 0)
    # a key run by another node than the consumer: its invocations are followed through
    # the database, not by futures
    slow = next(k for i in range(10_000) if nodes.owners().get(partition_of(
        partition_key_for(key=(k := f"slow-{i}")), PARTITIONS)) not in (consumer, None))
    broker.produce(topic, [(slow, {"seq": 0, "sleep_ms": 10000}), (b"\xff\xfe", {"seq": 9})]
                   + [(slow, {"seq": i}) for i in range(1, 30)])

    def paused() -> bool:
        taken = nodes.invocations()
        # 4 in flight, plus at most one fetch (4 records) taken before the pause
        assert taken <= 8, taken
        return taken >= 4

    _wait(paused, 60, "paused at the limit")
    time.sleep(3)
    assert nodes.invocations() <= 8
    assert nodes.seen(slow) == []  # the first record still sleeps

    # the record that cannot be delivered is parked by the consumer; every node lists it
    # and any node replays or drops it (sent to the node holding it)
    def parked() -> list[dict]:
        out = []
        for node in nodes.nodes.values():
            got = nodes.client.get(f"{node.admin_url}/kafka-parked-records").json()["records"]
            out.append(got)
        return out if all(len(g) == 1 for g in out) else []

    listed = _wait(parked, 60, "parked record listed")
    # every node's /metrics reports its own partitions' figures, labelled with its name:
    # the paused partition's lag by its consumer alone, the parked record by the node
    # holding it; summed over the nodes, the cluster's
    def scraped() -> dict[str, tuple[list[tuple[dict[str, str], float]], dict[str, float]]]:
        got = {name: _metrics(nodes, name) for name in NAMES}
        lags = [(name, labels) for name, (lag, _) in got.items()
                for labels, _value in lag if labels["subscription"] == sub_id]
        # never reported by another node than the consumer
        assert all(name == labels["node"] == consumer for name, labels in lags), lags
        return got if lags else {}

    got = _wait(scraped, 30, "the consumer reports its lag")
    ((labels, lag),) = got[consumer][0]
    assert labels["partition"] == "0" and lag > 0, (labels, lag)
    assert {name: parked_n for name, (_, parked_n) in got.items()} == {
        name: {name: 1 if name == consumer else 0} for name in NAMES}
    record = listed[0][0]
    assert all(g == [record] for g in listed)
    assert record["subscription_id"] == sub_id and record["offset"] == 1
    for node in nodes.nodes.values():
        r = nodes.client.post(f"{node.admin_url}/kafka-parked-records/{record['id']}/replay")
        assert r.status_code == 409 and "UTF-8" in r.json()["message"], r.text
    holder = [n for n in NAMES if n != consumer][0]
    r = nodes.client.delete(f"{nodes.nodes[holder].admin_url}/kafka-parked-records/{record['id']}")
    assert r.status_code == 202, r.text
    for node in nodes.nodes.values():
        assert nodes.client.get(f"{node.admin_url}/kafka-parked-records").json() == {
            "records": []}

    # the slow record ends, the partition resumes, every record arrives once and in order
    _wait(lambda: nodes.seen(slow) == list(range(30)), 180, "all records handled", 0.5)
    assert nodes.invocations() == 30


def test_a_record_whose_handler_goes_before_its_invoke_is_applied_is_parked(
    tmp_path: Path, broker: Broker
) -> None:
    """The consumer checks the sink and writes an `invoke` message; the handler is removed
    before the key's owner applies it: the record is parked on its Kafka partition's home
    (as the consumer parks what it cannot deliver), then replayed once the handler is back.
    The key's owner is killed so that its message waits in the outbox, deterministically,
    while the deployment is removed; a long TTL keeps that window open."""
    with running(Nodes(tmp_path, [], ttl="10s")) as c:
        nodes = cast(Nodes, c)
        try:
            _handler_gone_before_apply(nodes, broker)
        finally:
            nodes.client.close()


def _handler_gone_before_apply(nodes: Nodes, broker: Broker) -> None:
    topic, sub_id = _subscribe(nodes, broker, 1)
    consumer = nodes.home_owner(sub_id, topic, 0)
    writer = nodes.owners().get(0)  # writes the registry
    victim = next(n for n in NAMES if n not in (consumer, writer))
    key = nodes.key_owned_by(victim, "gone-")
    pid = partition_of(partition_key_for(key=key), PARTITIONS)
    broker.produce(topic, [(key, {"seq": 0})])
    _wait(lambda: nodes.seen(key) == [0], 60, "the first record handled")

    def invokes() -> int:
        return int(fetch(nodes.dsn, "SELECT count(*) FROM durably.outbox "
                                    f"WHERE kind = 'invoke' AND pid = {pid}")[0][0])

    nodes.nodes[victim].kill()
    broker.produce(topic, [(key, {"seq": 1})])
    _wait(lambda: invokes() == 1, 60, "the record taken, its invoke waiting in the outbox")
    admin = nodes.nodes[consumer].admin_url  # type: ignore[index]
    (deployment,) = nodes.client.get(f"{admin}/deployments").json()["deployments"]
    r = nodes.client.delete(f"{admin}/deployments/{deployment['id']}", params={"force": "true"})
    assert r.status_code == 202, r.text
    assert invokes() == 1, "applied before the handler went: the test proves nothing"

    # the survivors take the victim's partitions; the invoke finds no handler
    survivors = [n for n in NAMES if n != victim]

    def parked() -> list[dict]:
        got = [nodes.client.get(f"{nodes.nodes[n].admin_url}/kafka-parked-records").json()[
            "records"] for n in survivors]
        return got[0] if all(len(g) == 1 and g == got[0] for g in got) else []

    (record,) = _wait(parked, 90, "the record parked")
    assert invokes() == 0
    assert (record["subscription_id"], record["topic"], record["partition"],
            record["offset"], record["key_utf8"]) == (sub_id, topic, 0, 1, key)
    assert "KafkaLog" in record["error"], record
    assert nodes.invocations() == 1  # no invocation was made of it
    # parked on the consumer's partition (its id names it), counted in that node's metrics
    assert {n: _metrics(nodes, n)[1] for n in survivors} == {
        n: {n: 1 if n == consumer else 0} for n in survivors}

    # the handler is back: a replay through any node delivers it
    register(nodes.nodes[writer].admin_url, nodes.services.url,  # type: ignore[index]
             use_http_11=False)
    other = next(n for n in survivors if n != consumer)
    r = nodes.client.post(f"{nodes.nodes[other].admin_url}/kafka-parked-records/"
                          f"{record['id']}/replay")
    assert r.status_code == 200, r.text
    _wait(lambda: nodes.seen(key) == [0, 1], 90, "the replayed record handled")
    assert nodes.invocations() == 2
    for n in survivors:
        assert nodes.client.get(f"{nodes.nodes[n].admin_url}/kafka-parked-records").json() == {
            "records": []}
