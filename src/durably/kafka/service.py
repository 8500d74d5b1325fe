"""The running Kafka side of durably: clusters, subscriptions, their consumers, parked records.

`take()` is where exactly-once happens: called on the event loop with no await inside, it
creates the invocation of one record (or parks the record) and writes the record's offset
into the same open store batch, so both commit together or not at all. The consumer awaits
`durable()` (the batch committed and synced) before it commits the offset to the broker.

In a cluster under the spread placement (`engine.partitions` set), a Kafka partition's
records are consumed by the node that owns the cluster partition of its offset row
(`home`): that row's commits are fenced by the lease, so a former consumer can commit
nothing once the partition moved, and the next one starts from the stored offset. A record
for an object or a workflow becomes an `invoke` message to the owner of its key's
partition (`engine.partitions`), written in the same commit as the offset, even when that
owner is this node: the owner applies the messages of one sender in the order written, so
the records of a key start in partition order whichever nodes consume and run them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from durably.engine import partitions
from durably.engine.engine import TargetError
from durably.engine.model import now_ms
from durably.kafka.model import (
    KafkaCluster,
    KafkaDoc,
    Subscription,
    check_properties,
    fill_options,
    new_subscription_id,
    parse_sink,
    parse_source,
)
from durably.kafka.records import (
    Record,
    Unusable,
    home_key,
    invocation_headers,
    invocation_key,
)
from durably.schema.errors import AdminError
from durably.storage.base import PARKED_PARTITION_SHIFT, ParkedRecordRow

if TYPE_CHECKING:
    from durably.engine.engine import Engine
    from durably.kafka.consumer import SubscriptionConsumer

log = logging.getLogger("durably.kafka")

META_KEY = "kafka"
_MISSING = "Kafka subscriptions need aiokafka: pip install 'durably[kafka]'"
DEFAULT_MAX_IN_FLIGHT = 1000  # unfinished invocations per partition before it is paused


def parked_partition(record_id: int) -> int | None:
    """The partition whose owner holds a parked record (spread placement; None: an id
    given by a single node)."""
    pid = (record_id >> PARKED_PARTITION_SHIFT) - 1
    return pid if pid >= 0 else None


def park(store: Any, sub_id: str, record: Record, error: str) -> int:
    """Park a record that cannot become an invocation, in the store's open batch (its
    Kafka partition's home partition: this node must own it under the spread placement)."""
    row = ParkedRecordRow(
        id=0, subscription_id=sub_id, topic=record.topic, partition=record.partition,
        offset=record.offset, key=record.key, value=record.value,
        timestamp=record.timestamp, error=error, parked_at=now_ms(),
    )
    row.id = record_id = store.park_kafka_record(row)
    log.warning(
        "subscription %s: parked the record %s/%d@%d (replay or drop it with "
        "`durably subscriptions parked`): %s",
        sub_id, record.topic, record.partition, record.offset, error,
    )
    return int(record_id)


class NotHome(Exception):
    """A record of a Kafka partition this node no longer consumes (spread placement)."""


class KafkaSubscriptions:
    def __init__(
        self,
        engine: Engine,
        registry: Any,
        static_clusters: list[KafkaCluster] | None = None,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.registry = registry  # schema registry: sinks are checked against it
        self.max_in_flight = max_in_flight
        raw = self.store.load_meta(META_KEY)
        self.doc = KafkaDoc.load(None if raw is None else orjson.loads(raw))
        for c in static_clusters or []:
            self.doc.clusters[c.name] = c
        self.consumers: dict[str, SubscriptionConsumer] = {}
        self._started = False
        self.available = importlib.util.find_spec("aiokafka") is not None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._started = True
        if self.doc.subscriptions and not self.available:
            log.error("%d Kafka subscriptions are not consumed: %s", len(self.doc.subscriptions),
                      _MISSING)
            return
        for sub in list(self.doc.subscriptions.values()):
            self._start_consumer(sub)

    async def stop(self) -> None:
        self._started = False
        consumers, self.consumers = self.consumers, {}
        await asyncio.gather(*(c.stop() for c in consumers.values()), return_exceptions=True)

    async def sync(self, conn: Any) -> None:
        """Spread placement: read the document from the database (an asyncpg connection)
        and take it if another node changed it."""
        raw = await conn.fetchval("SELECT value FROM durably.meta WHERE key = $1", META_KEY)
        raw = None if raw is None else bytes(raw)
        if raw is None or raw == self.store.load_meta(META_KEY):
            return
        self.store._meta[META_KEY] = raw  # the copy the next comparison reads
        await self.reload(raw)
        log.info("Kafka subscriptions reloaded (changed by another node)")

    async def reload(self, raw: bytes | None) -> None:
        """Another node changed the clusters or subscriptions (spread placement): take its
        document and start or stop consumers to match. Returns once the consumers of
        deleted subscriptions stopped (nothing of theirs is taken after that)."""
        doc = KafkaDoc.load(None if raw is None else orjson.loads(raw))
        for c in self.doc.clusters.values():
            if c.static:  # given on the command line: they win, as at start
                doc.clusters[c.name] = c
        self.doc = doc
        if not self._started or not self.available:
            return
        gone: list[str] = []
        for sub_id, consumer in list(self.consumers.items()):
            sub = doc.subscriptions.get(sub_id)
            cluster = doc.clusters.get(consumer.cluster.name)
            if sub is None or cluster is None or cluster.properties != consumer.cluster.properties:
                await self._stop_consumer(sub_id)
                if sub is None:
                    gone.append(sub_id)
        for sub_id in gone:
            # an offset this node committed after the writer deleted them goes too
            self.store.delete_kafka_offsets(sub_id)
        if gone:
            await self.engine.committed()
        for sub in doc.subscriptions.values():
            if sub.id not in self.consumers:
                self._start_consumer(sub)

    def _start_consumer(self, sub: Subscription) -> None:
        from durably.kafka.consumer import SubscriptionConsumer

        cluster = self.doc.clusters.get(sub.cluster)
        if cluster is None:
            log.error("subscription %s: kafka cluster %r is gone; not consuming", sub.id, sub.cluster)
            return
        consumer = SubscriptionConsumer(self, sub, cluster)
        self.consumers[sub.id] = consumer
        consumer.start()

    async def _save(self) -> None:
        """Persist the document and wait until it is durable (answers follow the commit)."""
        self.store.save_meta(META_KEY, orjson.dumps(self.doc.dump()))
        await self.engine.committed()

    # -- clusters ----------------------------------------------------------------------

    def clusters(self) -> list[KafkaCluster]:
        return list(self.doc.clusters.values())

    def cluster(self, name: str) -> KafkaCluster | None:
        return self.doc.clusters.get(name)

    async def create_cluster(self, name: str, properties: dict[str, str]) -> KafkaCluster:
        if name in self.doc.clusters:
            raise AdminError(409, f"kafka cluster '{name}' already exists in schema registry")
        check_properties(name, properties)
        cluster = KafkaCluster(name, properties, now_ms())
        self.doc.clusters[name] = cluster
        await self._save()
        return cluster

    def _changeable(self, name: str, not_found: str, verb: str) -> KafkaCluster:
        cluster = self.doc.clusters.get(name)
        if cluster is None:
            raise AdminError(404, f"not found in the schema registry: {not_found}")
        if cluster.static:
            raise AdminError(400, f"kafka cluster '{name}' was given on the command line "
                             f"(--kafka-cluster) and cannot be {verb} through the API")
        return cluster

    async def update_cluster(self, name: str, properties: dict[str, str]) -> KafkaCluster:
        # (Restate's two 404 messages differ in wording, kept as they are)
        cluster = self._changeable(name, f"kafka cluster '{name}'", "changed")
        check_properties(name, properties)
        cluster.properties = properties
        await self._save()
        for sub in self.subscriptions_of(name):  # reconnect with the new properties
            await self._stop_consumer(sub.id)
            if self._started:
                self._start_consumer(sub)
        return cluster

    async def delete_cluster(self, name: str) -> None:
        self._changeable(name, f"kafka cluster named '{name}'", "deleted")
        for sub in self.subscriptions_of(name):
            await self._stop_consumer(sub.id)
            del self.doc.subscriptions[sub.id]
            self.store.delete_kafka_offsets(sub.id)
        del self.doc.clusters[name]
        await self._save()

    def subscriptions_of(self, cluster: str) -> list[Subscription]:
        return [s for s in self.doc.subscriptions.values() if s.cluster == cluster]

    # -- subscriptions -----------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        return list(self.doc.subscriptions.values())

    def subscription(self, sub_id: str) -> Subscription | None:
        return self.doc.subscriptions.get(sub_id)

    async def create_subscription(
        self, source: str, sink: str, options: dict[str, str]
    ) -> Subscription:
        if not self.available:
            raise AdminError(400, _MISSING)
        service, handler = parse_sink(sink)
        svc = self.registry.find_service(service)
        if svc is None or svc.handler(handler) is None:
            raise AdminError(
                400,
                f"[META0009] invalid sink URI '{sink}': cannot find service/handler specified "
                "in the sink URI.",
                "META0009",
            )
        cluster_name, _topic = parse_source(source)
        cluster = self.doc.clusters.get(cluster_name)
        if cluster is None:
            names = ", ".join(f'"{n}"' for n in self.doc.clusters)
            raise AdminError(
                400, f"Kafka cluster '{cluster_name}' not found. Available clusters: [{names}]"
            )
        sub_id = new_subscription_id()
        sub = Subscription(sub_id, source, sink, fill_options(sub_id, options, cluster))
        self.doc.subscriptions[sub_id] = sub
        await self._save()
        if self._started:
            self._start_consumer(sub)
        return sub

    async def delete_subscription(self, sub_id: str) -> None:
        if sub_id not in self.doc.subscriptions:
            raise AdminError(
                404, f"not found in the schema registry: subscription with id '{sub_id}'"
            )
        # the consumer stops first: nothing of this subscription is taken after the answer;
        # invocations already created still run (as Restate)
        await self._stop_consumer(sub_id)
        del self.doc.subscriptions[sub_id]
        self.store.delete_kafka_offsets(sub_id)
        await self._save()

    async def _stop_consumer(self, sub_id: str) -> None:
        consumer = self.consumers.pop(sub_id, None)
        if consumer is not None:
            await consumer.stop()

    # -- records -----------------------------------------------------------------------

    def home(self, sub_id: str, topic: str, partition: int) -> int | None:
        """The cluster partition of a Kafka partition's offset row and parked records (None:
        a single node, which owns them all)."""
        parts = self.engine.partitions
        if parts is None:
            return None
        return parts.of_key(home_key(sub_id, topic, partition))

    def owns(self, sub_id: str, topic: str, partition: int) -> bool:
        """Whether this node consumes that Kafka partition now (it owns its home)."""
        home = self.home(sub_id, topic, partition)
        parts = self.engine.partitions
        return home is None or parts is None or home in parts.owned

    def take(self, sub: Subscription, record: Record) -> asyncio.Future[Any] | str | None:
        """Turn one record into an invocation (or a parked record) and store its offset, in
        the engine's open batch. Returns a future resolved when the invocation completes,
        the id of an invocation another node will run (`finished` tells when it did), or
        None when no invocation was created."""
        if not self.owns(sub.id, record.topic, record.partition):
            # handed over a moment ago: the fence would refuse the offset (the consumer
            # lets go of the partition on its next round)
            raise NotHome(record.topic, record.partition)
        if not self.store.put_kafka_offset(sub.id, sub.group_id, record.topic,
                                           record.partition, record.offset):
            return None  # taken before (by this server before a crash, or by another)
        fut: asyncio.Future[Any] | str | None = None
        try:
            invocation_id = self._invoke(sub, record)
            parts = self.engine.partitions
            if invocation_id is not None:
                if parts is None or parts.owns_id(invocation_id):
                    fut = self.engine.wait_result(invocation_id)
                else:
                    fut = invocation_id
        except Unusable as e:
            self.park(sub, record, str(e))
        except Exception as e:  # a bug must not jam the partition either: park, log it
            log.exception("subscription %s: taking a record failed", sub.id)
            self.park(sub, record, f"internal error: {type(e).__name__}: {e}")
        return fut

    def _invoke(self, sub: Subscription, record: Record) -> str | None:
        """The id of the invocation created for `record` (None: its workflow already ran;
        under the spread placement, the id of the invocation its message creates)."""
        engine = self.engine
        service, handler = sub.service, sub.handler
        service_ty = engine.schema.service_ty(service)
        if service_ty is None:
            raise Unusable(f"the service '{service}' of the sink {sub.sink} is not registered")
        key = invocation_key(record, service_ty)
        try:
            target, options = engine.schema.target(service, handler, key)
        except TargetError as e:
            raise Unusable(e.message) from None
        headers = invocation_headers(record, sub.id)
        parts = engine.partitions
        if parts is not None and key is not None:
            # spread placement: a message to the owner of the key's partition, even this
            # node (the module's doc: the records of a key start in order)
            inv_id = engine.new_invocation_id(target, None)
            partitions.send(engine, parts.of_key(inv_id.partition_key), "invoke",
                            partitions.invoke_payload(
                                str(inv_id), target, record.value or b"", headers,
                                idempotency_key=None, execution_time=None,
                                invoked_by="subscription", caller_id=None, caller_target=None,
                                invoked_by_id=sub.id, idempotency_retention_ms=None,
                                reply_to=None,
                            ))
            return str(inv_id)
        submitted = engine.create(
            target,
            options,
            record.value or b"",
            headers,
            invoked_by="subscription",
            invoked_by_id=sub.id,
        )
        if submitted.existed:  # a workflow that already ran for this key
            return None
        return submitted.invocation_id

    def park(self, sub: Subscription, record: Record, error: str) -> None:
        park(self.store, sub.id, record, error)

    async def durable(self) -> None:
        await self.engine.committed()

    async def finished(self, ids: list[str]) -> set[str]:
        """Of invocations that records made on other nodes' partitions (spread placement),
        those that completed or are gone. Read in one snapshot: an id with neither a row
        nor a message still on its way was created, completed and removed."""
        parts = self.engine.partitions
        if parts is None or not ids:
            return set()

        async def read(conn: Any) -> tuple[dict[str, str], set[str]]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                status = dict(await conn.fetch(
                    "SELECT id, status FROM durably.invocation WHERE id = ANY($1::text[])", ids
                ))
                absent = [i for i in ids if i not in status]
                pending: set[str] = set()
                if absent:
                    pids = sorted({pid for i in absent if (pid := parts.of_id(i)) is not None})
                    for (body,) in await conn.fetch(
                        "SELECT body FROM durably.outbox WHERE kind = 'invoke' "
                        "AND pid = ANY($1::integer[])", pids,
                    ):
                        pending.add(orjson.loads(bytes(body))["id"])
            return status, pending

        # (on the node's side connection: this runs every round while a partition is paused)
        status, pending = await self.store.side.run(read)
        return {
            i for i in ids
            if status.get(i) == "completed" or (i not in status and i not in pending)
        }

    # -- parked records ----------------------------------------------------------------

    def parked(self, sub_id: str | None = None) -> list[ParkedRecordRow]:
        """This node's parked records (all of them but under the spread placement)."""
        rows: list[ParkedRecordRow] = self.store.kafka_parked(sub_id)
        return rows

    async def all_parked(self, sub_id: str | None = None) -> list[ParkedRecordRow]:
        """Every parked record of the cluster."""
        if self.engine.partitions is None:
            return self.parked(sub_id)
        rows: list[ParkedRecordRow] = await self.store.all_kafka_parked(sub_id)
        return rows

    def _parked_row(self, record_id: int) -> ParkedRecordRow:
        for row in self.parked():
            if row.id == record_id:
                return row
        raise AdminError(404, f"The parked record '{record_id}' does not exist")

    async def replay(self, record_id: int) -> str | None:
        """Try a parked record again (e.g. after the missing handler was registered).

        Returns the new invocation's id, or raises 409 with the reason it still fails."""
        row = self._parked_row(record_id)
        sub = self.doc.subscriptions.get(row.subscription_id)
        if sub is None:
            raise AdminError(409, f"the subscription {row.subscription_id} no longer exists")
        record = Record(row.topic, row.partition, row.offset, row.key, row.value, row.timestamp)
        try:
            invocation_id = self._invoke(sub, record)
        except Unusable as e:
            raise AdminError(409, f"the record still cannot be delivered: {e}") from None
        self.store.delete_parked_record(record_id)
        await self.durable()
        log.info("subscription %s: replayed parked record %d as %s", sub.id, record_id,
                 invocation_id)
        return invocation_id

    async def drop(self, record_id: int) -> None:
        self._parked_row(record_id)
        self.store.delete_parked_record(record_id)
        await self.durable()
        log.info("dropped parked record %d", record_id)

    # -- metrics -----------------------------------------------------------------------

    def lag(self) -> list[tuple[str, str, int, int]]:
        """(subscription, topic, partition, records behind the high watermark) of the Kafka
        partitions this node consumes now (under the spread placement, one node each: a
        partition being handed over is no longer this node's, even before its consumer's
        next round lets go of it)."""
        out: list[tuple[str, str, int, int]] = []
        for sub_id, consumer in list(self.consumers.items()):
            for topic, partition, lag in consumer.lag():
                if self.owns(sub_id, topic, partition):
                    out.append((sub_id, topic, partition, lag))
        return out

    def register_metrics(self, registry: Any, node: str | None = None) -> None:
        registry.register(_LagCollector(self, node))


class _LagCollector:
    """`durably_kafka_consumer_lag{subscription, topic, partition}`: records on the broker
    not yet taken (high watermark - next offset), as of each consumer's last fetch;
    `durably_kafka_parked_records`: the records parked on this node's partitions.

    A node of a cluster adds its name as the label `node`. Each Kafka partition is consumed,
    and each parked record kept, by the owner of one cluster partition, so under the spread
    placement every node reports the figures of its own partitions, whoever parked the
    records there, and their sum over the nodes is the cluster's (docs/kafka.md, "In a
    cluster"); under the leader placement every node's /metrics is the leader's."""

    def __init__(self, kafka: KafkaSubscriptions, node: str | None) -> None:
        self.kafka = kafka
        self.node = [] if node is None else [node]

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        node_label = ["node"] if self.node else []
        lag = GaugeMetricFamily(
            "durably_kafka_consumer_lag",
            "Records of a subscribed partition not yet taken by durably",
            labels=["subscription", "topic", "partition", *node_label],
        )
        for sub_id, topic, partition, n in self.kafka.lag():
            lag.add_metric([sub_id, topic, str(partition), *self.node], n)
        yield lag
        parked = GaugeMetricFamily(
            "durably_kafka_parked_records", "Records parked because they cannot be delivered",
            labels=node_label,
        )
        parked.add_metric(self.node, len(self.kafka.parked()))
        yield parked
