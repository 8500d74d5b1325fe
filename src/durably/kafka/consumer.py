"""One aiokafka consumer per subscription, feeding the engine.

The consumer takes every partition of its topic itself (`assign`, no group membership):
durably is the group's only reader, and the broker's group protocol is then not on the
path (a member killed with -9 can keep a group from rebalancing until its session expires,
and one of the brokers tested never recovered from it). The group id still names the
offsets committed to the broker, so the usual tools show the group's lag.

The loop: fetch a batch; for each record in partition order, skip it if its offset is at or
below the one stored for that partition (a repeat after a crash or a rebalance), else `take`
it (invocation or parked record, plus its offset, in the engine's open batch); wait until the
batch is durable; only then commit offset+1 of each partition to the broker. On assignment
each partition is moved to max(broker's committed offset, stored offset + 1), so a broker
that lost its offsets does not make durably ingest a record twice.

In a cluster under the spread placement each node consumes only the Kafka partitions whose
offset rows live in cluster partitions it owns (`KafkaSubscriptions.owns`), checked every
round: a partition whose lease moves away is let go of (its records are no longer taken
from the moment the hand-over starts), one whose lease arrives is assigned at its stored
offset + 1, read from the rows the store loaded with the partition.

Backpressure: each partition has at most `max_in_flight` unfinished invocations made from
its records; beyond that the partition is paused (the broker keeps the records) and resumed
when enough of them have completed. Invocations this node runs are followed by their
futures; those another node runs (spread placement) are looked up in the database, about
once a second and only while the partition is paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from durably.kafka.model import KafkaCluster, Subscription
from durably.kafka.records import Record

if TYPE_CHECKING:
    from durably.kafka.service import KafkaSubscriptions

log = logging.getLogger("durably.kafka")

_RESET = {"earliest": "earliest", "smallest": "earliest", "beginning": "earliest",
          "latest": "latest", "largest": "latest", "end": "latest", "error": "none"}
# librdkafka property -> (aiokafka argument, converter); others are accepted and ignored
_INT_PROPS = {
    "session.timeout.ms": "session_timeout_ms",
    "heartbeat.interval.ms": "heartbeat_interval_ms",
    "max.poll.interval.ms": "max_poll_interval_ms",
    "fetch.wait.max.ms": "fetch_max_wait_ms",
    "fetch.min.bytes": "fetch_min_bytes",
    "fetch.max.bytes": "fetch_max_bytes",
    "max.partition.fetch.bytes": "max_partition_fetch_bytes",
    "request.timeout.ms": "request_timeout_ms",
    "metadata.max.age.ms": "metadata_max_age_ms",
}
_RESTART_DELAY_S = 1.0
_TOPIC_WAIT_S = 1.0
_PARTITION_CHECK_S = 30.0  # how often to look for partitions added to the topic
_LAG_REFRESH_S = 2.0  # how often to ask the broker for the end of paused partitions
_REMOTE_CHECK_S = 1.0  # how often a paused partition's invocations on other nodes are looked up


def consumer_settings(sub: Subscription, cluster: KafkaCluster) -> dict[str, Any]:
    """aiokafka's arguments from the cluster properties and the subscription options."""
    props = {**cluster.properties, **sub.options}
    settings: dict[str, Any] = {
        "bootstrap_servers": cluster.bootstrap_servers,
        "group_id": sub.group_id,
        "client_id": props.get("client.id", "restate"),
        "enable_auto_commit": False,
        "auto_offset_reset": _RESET.get(props.get("auto.offset.reset", "latest").lower(), "latest"),
    }
    for prop, arg in _INT_PROPS.items():
        if prop in props:
            with contextlib.suppress(ValueError):
                settings[arg] = int(props[prop])
    return settings


async def _topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The topic's partitions, from fresh metadata (empty if the topic does not exist).

    `consumer.topics()` fetches fresh metadata but keeps it from `partitions_for_topic`,
    which reads the client's cached view; the client's own call returns it (aiokafka <0.15).
    """
    cluster = await consumer._client.fetch_all_metadata()
    return set(cluster.partitions_for_topic(topic) or ())


class SubscriptionConsumer:
    def __init__(self, service: KafkaSubscriptions, sub: Subscription, cluster: KafkaCluster) -> None:
        self.service = service
        self.sub = sub
        self.cluster = cluster
        self.max_in_flight = service.max_in_flight
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # partition -> highest offset taken (loaded from the store on assignment)
        self._taken: dict[TopicPartition, int] = {}
        self._in_flight: dict[TopicPartition, int] = {}
        # invocations run by other nodes (spread placement), per partition, until finished
        self._remote: dict[TopicPartition, list[str]] = {}
        self._remote_checked = 0.0
        self._paused: set[TopicPartition] = set()
        self._lag: dict[TopicPartition, int] = {}
        self._ends_asked = 0.0
        self._assigned: set[int] = set()  # the topic's partitions this consumer reads

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"kafka-{self.sub.id}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close()

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def lag(self) -> list[tuple[str, int, int]]:
        return [(tp.topic, tp.partition, n) for tp, n in sorted(self._lag.items())]

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # broker gone, group errors: start over, never give up
                log.warning("subscription %s: consumer failed (%s: %s); restarting in %.0fs",
                            self.sub.id, type(e).__name__, e, _RESTART_DELAY_S)
                await self._close()
                await asyncio.sleep(_RESTART_DELAY_S)

    async def _consume(self) -> None:
        settings = consumer_settings(self.sub, self.cluster)
        consumer = AIOKafkaConsumer(**settings)
        self._consumer = consumer
        await consumer.start()
        self._assigned = set()
        partitions = await self._wait_for_topic(consumer)
        await self._assign(consumer, partitions)
        log.info("subscription %s: consuming %s (%d of %d partitions) from %s for group %s",
                 self.sub.id, self.sub.topic, len(self._assigned), len(partitions),
                 self.cluster.name, self.sub.group_id)
        checked = time.monotonic()
        while not self._stopping:
            if self._mine(partitions) != self._assigned:
                await self._assign(consumer, partitions)  # leases moved (spread placement)
            if not self._assigned:
                await asyncio.sleep(0.5)
                batch = {}
            else:
                # at most max_in_flight records per fetch: what a paused partition may
                # overshoot by
                batch = await consumer.getmany(
                    timeout_ms=500, max_records=min(500, self.max_in_flight)
                )
            commits: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, messages in batch.items():
                if not self.service.owns(self.sub.id, tp.topic, tp.partition):
                    continue  # handed over while fetching: its next consumer takes these
                last = self._taken.get(tp, -1)
                for m in messages:
                    if m.offset <= last:
                        continue  # taken before (stored with its invocation): a repeat
                    record = Record(m.topic, m.partition, m.offset, m.key, m.value,
                                    m.timestamp)
                    fut = self.service.take(self.sub, record)
                    last = m.offset
                    if isinstance(fut, str):
                        self._remote.setdefault(tp, []).append(fut)
                        self._maybe_pause(tp)
                    elif fut is not None:
                        self._track(tp, fut)
                if last >= 0 and last != self._taken.get(tp, -1):
                    self._taken[tp] = last
                    commits[tp] = OffsetAndMetadata(last + 1, "")
            if commits:
                await self.service.durable()
                try:
                    await consumer.commit(commits)
                except KafkaError as e:
                    # the stored offsets keep repeats out; the broker catches up next time
                    log.info("subscription %s: offset commit failed (%s)", self.sub.id, e)
            await self._update_lag(consumer)
            if self._paused and time.monotonic() - self._remote_checked > _REMOTE_CHECK_S:
                self._remote_checked = time.monotonic()
                await self._check_remote()
            if time.monotonic() - checked > _PARTITION_CHECK_S:
                checked = time.monotonic()
                now = await _topic_partitions(consumer, self.sub.topic)
                if now - partitions:
                    partitions = set(now)
                    await self._assign(consumer, partitions)

    async def _wait_for_topic(self, consumer: AIOKafkaConsumer) -> set[int]:
        waited = False
        while True:
            partitions = await _topic_partitions(consumer, self.sub.topic)
            if partitions:
                return partitions
            if not waited:
                log.info("subscription %s: waiting for the topic %s to exist", self.sub.id,
                         self.sub.topic)
                waited = True
            await asyncio.sleep(_TOPIC_WAIT_S)

    def _mine(self, partitions: set[int]) -> set[int]:
        return {p for p in partitions if self.service.owns(self.sub.id, self.sub.topic, p)}

    async def _assign(self, consumer: AIOKafkaConsumer, partitions: set[int]) -> None:
        """Take every partition of the topic this node consumes (durably is the only member
        of the group), each at max(the broker's committed offset, the stored offset + 1)."""
        mine = self._mine(partitions)
        for p in self._assigned - mine:  # another node takes it from its stored offset
            tp = TopicPartition(self.sub.topic, p)
            self._taken.pop(tp, None)
            self._lag.pop(tp, None)
            self._remote.pop(tp, None)  # (the next consumer counts from zero)
            self._paused.discard(tp)
        if self._assigned != mine and self._assigned:
            log.info("subscription %s: now consuming partitions %s of %s", self.sub.id,
                     sorted(mine), self.sub.topic)
        self._assigned = mine
        tps = [TopicPartition(self.sub.topic, p) for p in sorted(mine)]
        consumer.assign(tps)
        stored = self.service.store.kafka_offsets(self.sub.id, self.sub.group_id)
        for tp in tps:
            last = stored.get((tp.topic, tp.partition))
            if last is None:
                continue  # nothing taken yet: the broker's offset, else auto.offset.reset
            self._taken[tp] = max(last, self._taken.get(tp, -1))
            committed = await consumer.committed(tp)
            if committed is None or committed <= self._taken[tp]:
                consumer.seek(tp, self._taken[tp] + 1)
        paused = [tp for tp in tps if tp in self._paused]
        if paused:
            consumer.pause(*paused)

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        ends: dict[TopicPartition, int] = {}
        if self._paused and time.monotonic() - self._ends_asked > _LAG_REFRESH_S:
            # a paused partition is not fetched, so its high watermark would go stale just
            # when the lag matters: ask the broker
            self._ends_asked = time.monotonic()
            with contextlib.suppress(KafkaError, asyncio.TimeoutError):
                ends = await consumer.end_offsets(list(self._paused))
        for tp in consumer.assignment():
            high = ends.get(tp, consumer.highwater(tp))
            if high is not None:
                self._lag[tp] = max(0, high - (self._taken.get(tp, -1) + 1))

    # -- backpressure ------------------------------------------------------------------

    def _unfinished(self, tp: TopicPartition) -> int:
        return self._in_flight.get(tp, 0) + len(self._remote.get(tp, ()))

    def _track(self, tp: TopicPartition, fut: asyncio.Future[Any]) -> None:
        self._in_flight[tp] = self._in_flight.get(tp, 0) + 1
        fut.add_done_callback(lambda f: self._finished(tp, f))
        self._maybe_pause(tp)

    def _maybe_pause(self, tp: TopicPartition) -> None:
        n = self._unfinished(tp)
        if n >= self.max_in_flight and tp not in self._paused and self._consumer is not None:
            self._paused.add(tp)
            self._consumer.pause(tp)
            log.info("subscription %s: %s-%d paused (%d invocations in flight)",
                     self.sub.id, tp.topic, tp.partition, n)

    def _finished(self, tp: TopicPartition, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled():
            fut.exception()  # (its partition moved to another node: no longer tracked)
        self._in_flight[tp] = self._in_flight.get(tp, 1) - 1
        self._maybe_resume(tp)

    def _maybe_resume(self, tp: TopicPartition) -> None:
        if tp in self._paused and self._unfinished(tp) <= self.max_in_flight // 2:
            self._paused.discard(tp)
            if self._consumer is not None:
                with contextlib.suppress(Exception):
                    self._consumer.resume(tp)

    async def _check_remote(self) -> None:
        """Forget the invocations of paused partitions that other nodes finished."""
        ids = [i for tp in self._paused for i in self._remote.get(tp, ())]
        if not ids:
            return
        try:
            done = await self.service.finished(ids)
        except Exception as e:  # the database away: the partition stays paused a while
            log.info("subscription %s: looking up invocations failed (%s)", self.sub.id, e)
            return
        for tp in list(self._paused):
            remote = self._remote.get(tp)
            if remote:
                self._remote[tp] = [i for i in remote if i not in done]
            self._maybe_resume(tp)
