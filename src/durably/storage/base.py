"""The storage interface the engine writes through.

Every method runs inside the store's current write batch; nothing is durable until
`commit()` returns. The engine groups all the changes of one event-loop step into one
batch (group commit) and releases the effects the outside can observe only afterwards.

Rows carry the partition key of the invocation or object they belong to, so that a
backend shared by several nodes can hand out partitions as the unit of ownership.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class InvocationRow:
    """Everything the engine persists about one invocation, besides its journal."""

    id: str
    partition_key: int
    service: str
    handler: str
    key: str | None
    service_ty: str  # service | virtual_object | workflow
    handler_ty: str | None  # exclusive | shared | workflow | None (plain service)
    status: str  # scheduled | inboxed | invoked | suspended | backing-off | paused | completed
    created_at: int
    modified_at: int
    idempotency_key: str | None = None
    deployment_id: str | None = None
    protocol_version: int | None = None
    invoked_by: str = "ingress"  # ingress | service
    invoked_by_id: str | None = None
    invoked_by_target: str | None = None
    execution_time: int | None = None  # delayed invocations: when to start (epoch ms)
    inbox_seq: int | None = None
    inboxed_at: int | None = None
    running_at: int | None = None
    completed_at: int | None = None
    retry_count: int = 0
    last_failure: str | None = None
    last_failure_code: int | None = None
    next_retry_at: int | None = None
    random_seed: int = 0
    journal_length: int = 0
    waiting: str | None = None  # JSON of what a suspended invocation waits for
    result: bytes | None = None  # encoded completion result (see engine.model.Result)
    expires_at: int | None = None  # completed rows: when they may be removed
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class TimerRow:
    id: int
    fire_at: int
    kind: str  # sleep | invoke
    invocation_id: str
    completion_id: int


# spread placement: a parked record's id carries its partition + 1 above these bits, so a
# request naming it goes to that partition's owner (durably.kafka.service.parked_partition)
PARKED_PARTITION_SHIFT = 40


@dataclass(slots=True)
class ParkedRecordRow:
    """A Kafka record that could not become an invocation (see durably.kafka)."""

    id: int  # assigned by the store (0 when new)
    subscription_id: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # epoch ms, as the record carries it
    error: str
    parked_at: int  # epoch ms


@dataclass(slots=True)
class SubscriberRow:
    target_id: str
    subscriber_id: str
    completion_id: int
    notification_type: int


class Store(Protocol):
    # lifecycle
    def commit(self) -> None: ...
    def close(self) -> None: ...

    # registry document (deployments and services)
    def load_meta(self, key: str) -> bytes | None: ...
    def save_meta(self, key: str, value: bytes) -> None: ...

    # invocations
    def put_invocation(self, row: InvocationRow) -> None: ...
    def get_invocation(self, invocation_id: str) -> InvocationRow | None: ...
    def delete_invocation(self, invocation_id: str) -> None: ...
    def active_invocations(self) -> list[InvocationRow]: ...
    def expired_invocations(self, now: int, limit: int) -> list[InvocationRow]: ...

    # journal
    def append_journal(
        self, invocation_id: str, index: int, entry_type: int, body: bytes, now: int
    ) -> None: ...
    def load_journal(self, invocation_id: str) -> list[tuple[int, bytes]]: ...
    def delete_journal(self, invocation_id: str) -> None: ...

    # state of virtual objects and workflows
    def get_state(self, service: str, key: str, name: bytes) -> bytes | None: ...
    def all_state(self, service: str, key: str) -> list[tuple[bytes, bytes]]: ...
    def set_state(self, service: str, key: str, name: bytes, value: bytes) -> None: ...
    def clear_state(self, service: str, key: str, name: bytes) -> None: ...
    def clear_all_state(self, service: str, key: str) -> None: ...

    # workflow promises
    def get_promise(self, service: str, key: str, name: str) -> bytes | None: ...
    def set_promise(self, service: str, key: str, name: str, result: bytes) -> None: ...
    def clear_promises(self, service: str, key: str) -> None: ...
    def add_promise_listener(
        self, service: str, key: str, name: str, invocation_id: str, completion_id: int
    ) -> None: ...
    def take_promise_listeners(
        self, service: str, key: str, name: str
    ) -> list[tuple[str, int]]: ...

    # who waits for an invocation's result
    def add_subscriber(self, row: SubscriberRow) -> None: ...
    def take_subscribers(self, target_id: str) -> list[SubscriberRow]: ...
    def children_of(self, invocation_id: str, notification_type: int) -> list[str]: ...

    # durable timers
    def add_timer(self, fire_at: int, kind: str, invocation_id: str, completion_id: int) -> int: ...
    def delete_timer(self, timer_id: int) -> None: ...
    def delete_timers_of(self, invocation_id: str) -> None: ...
    def all_timers(self) -> list[TimerRow]: ...

    # Kafka subscriptions (durably.kafka). Exactly-once ingestion: the highest offset taken
    # from each (subscription, consumer group, topic, partition) is advanced by
    # `put_kafka_offset` in the same batch as the invocation created from that record (or
    # the parked record), so a record is either fully taken with its offset, or not at all.
    # `put_kafka_offset` is the arbiter: it answers False, and changes nothing, when the
    # offset is not above the stored one (a repeat: the caller then creates nothing). A
    # backend shared by several nodes must decide this inside the batch's transaction (e.g.
    # a conditional upsert on the locked row), so two nodes can never both take a record.
    def kafka_offsets(self, subscription_id: str, group: str) -> dict[tuple[str, int], int]: ...
    def put_kafka_offset(
        self, subscription_id: str, group: str, topic: str, partition: int, offset: int
    ) -> bool: ...
    def delete_kafka_offsets(self, subscription_id: str) -> None: ...
    def park_kafka_record(self, row: ParkedRecordRow) -> int: ...
    def kafka_parked(self, subscription_id: str | None = None) -> list[ParkedRecordRow]: ...
    def delete_parked_record(self, record_id: int) -> None: ...
