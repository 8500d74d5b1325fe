"""Which partitions an engine owns, and the messages it sends to the others.

A single node owns every partition: the engine then has no `Partitions` at all
(`engine.partitions is None`) and nothing here runs. A node of a cluster in spread
placement owns a subset (`durably.cluster.node`); whatever the engine would do to an
invocation of a partition it does not own becomes a *message* instead, written into the
store's outbox in the same commit as the step that caused it. The owner of the target
partition applies the message (`apply`) and deletes it in one commit of its own, so each
message takes effect exactly once, in the order it was written.

Messages (kind, JSON payload):
- `invoke`: create an invocation whose id the sender already chose (random, or
  deterministic for idempotent and workflow targets), with an optional subscriber (the
  caller of a call) recorded in the same step: an existing idempotent target answers the
  subscriber from its result, or records it;
- `subscribe`: attach to an invocation (answered at once if completed, NOT_FOUND if unknown);
- `output`: get an invocation's output now (result, void or NOT_FOUND);
- `notify`: a notification for an invocation's journal (completions, signals, awakeables);
- `cancel`, `kill`: as the admin API's, on the target's owner;
- `park`: a Kafka record whose `invoke` found its handler gone (removed after the
  consumer checked it): parked by the owner of its Kafka partition's home partition,
  where the consumer parks the records it cannot deliver itself (`durably.kafka.service`);
- `deadlock`, `undeadlock`: a wait-for cycle found by another node that the target is
  part of, and its end (`engine.deadlock`).

Pure bookkeeping and no I/O: the store writes and deletes the outbox rows.
"""

from __future__ import annotations

import base64
import logging
import random
from typing import TYPE_CHECKING, Any

import orjson

from durably.ids import InvocationId, key_range, partition_of_stored

if TYPE_CHECKING:
    from durably.engine.engine import Engine

log = logging.getLogger("durably.engine")


class PartitionMoved(Exception):
    """The partition of an invocation a caller waited on moved to another node."""


def _b(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb(text: str) -> bytes:
    return base64.b64decode(text)


class Partitions:
    """The set of partitions this engine owns (changed by the cluster node as leases move)."""

    def __init__(self, num_partitions: int, owned: set[int] | None = None) -> None:
        self.num_partitions = num_partitions
        self.owned: set[int] = set(owned or ())
        self._owned_list: list[int] = sorted(self.owned)

    def set_owned(self, owned: set[int]) -> None:
        self.owned = set(owned)
        self._owned_list = sorted(self.owned)

    def of_key(self, partition_key: int) -> int:
        return partition_of_stored(partition_key, self.num_partitions)

    def of_id(self, invocation_id: str) -> int | None:
        try:
            return self.of_key(InvocationId.parse(invocation_id).partition_key)
        except ValueError:
            return None

    def owns_key(self, partition_key: int) -> bool:
        return self.of_key(partition_key) in self.owned

    def owns_id(self, invocation_id: str) -> bool:
        pid = self.of_id(invocation_id)
        return pid is None or pid in self.owned

    def local_key(self) -> int | None:
        """A random partition key in one of the owned partitions (None: owns none)."""
        if not self._owned_list:
            return None
        return random.randrange(*key_range(random.choice(self._owned_list), self.num_partitions))


# ---------------------------------------------------------------------------- sending


def send(engine: Engine, pid: int, kind: str, payload: dict[str, Any]) -> None:
    """Write a message for partition `pid` into this step's batch."""
    engine.store.put_outbox(pid, kind, orjson.dumps(payload))
    engine._schedule_flush()


def send_to_invocation(engine: Engine, invocation_id: str, kind: str, payload: dict[str, Any]) -> None:
    assert engine.partitions is not None
    pid = engine.partitions.of_id(invocation_id)
    if pid is not None:
        send(engine, pid, kind, payload)


def invoke_payload(
    inv_id: str,
    target: Any,
    body: bytes,
    headers: list[tuple[str, str]],
    *,
    idempotency_key: str | None,
    execution_time: int | None,
    invoked_by: str,
    caller_id: str | None,
    caller_target: str | None,
    invoked_by_id: str | None,
    idempotency_retention_ms: int | None,
    reply_to: int | None,
) -> dict[str, Any]:
    return {
        "id": inv_id,
        "service": target.service,
        "handler": target.handler,
        "key": target.key,
        "body": _b(body),
        "headers": headers,
        "idempotency_key": idempotency_key,
        "execution_time": execution_time,
        "invoked_by": invoked_by,
        "caller_id": caller_id,
        "caller_target": caller_target,
        "invoked_by_id": invoked_by_id,
        "idempotency_retention_ms": idempotency_retention_ms,
        "reply_to": reply_to,
    }


def notify_payload(invocation_id: str, msg_type: int, body: bytes) -> dict[str, Any]:
    return {"id": invocation_id, "type": int(msg_type), "body": _b(body)}


# ---------------------------------------------------------------------------- receiving


def apply(engine: Engine, kind: str, raw: bytes) -> None:
    """Apply one message addressed to a partition this engine owns (in the current step)."""
    from durably.engine.engine import TargetError
    from durably.engine.model import NOT_FOUND, WORKFLOW_ALREADY_INVOKED, Failure, Result
    from durably.engine.notifications import notification
    from durably.protocol.messages import MessageType
    from durably.storage.base import SubscriberRow

    msg = orjson.loads(raw)

    def answer(subscriber: str, cid: int, ty: int, result: Result | None) -> None:
        t = MessageType(ty)
        if result is None:
            body = notification(t, completion_id=cid, void=True)
        else:
            body = notification(t, completion_id=cid, result=result)
        engine.notify(subscriber, t, body)

    if kind == "notify":
        engine.notify(msg["id"], MessageType(msg["type"]), _unb(msg["body"]))
    elif kind == "invoke":
        inv_id: str = msg["id"]
        reply_to = msg.get("reply_to")
        caller = msg.get("caller_id")
        try:
            target, options = engine.schema.target(msg["service"], msg["handler"], msg["key"])
        except TargetError as e:
            if reply_to is not None and caller:
                answer(caller, reply_to, int(MessageType.CALL_COMPLETION),
                       Result(failure=Failure(e.status, e.message)))
            elif msg.get("invoked_by") == "subscription":
                _park_elsewhere(engine, msg, e.message)
            return
        submitted = engine.create(
            target, options, _unb(msg["body"]), [tuple(h) for h in msg["headers"]],
            idempotency_key=msg.get("idempotency_key"),
            execution_time=msg.get("execution_time"),
            invoked_by=msg.get("invoked_by") or "service",
            invoked_by_id=caller or msg.get("invoked_by_id"),
            invoked_by_target=msg.get("caller_target"),
            idempotency_retention_ms=msg.get("idempotency_retention_ms"),
            invocation_id=InvocationId.parse(inv_id),
        )
        if reply_to is None or not caller:
            return
        ty = int(MessageType.CALL_COMPLETION)
        if submitted.existed and target.is_workflow_run:
            answer(caller, reply_to, ty, Result(failure=WORKFLOW_ALREADY_INVOKED))
            return
        result = engine.completed_result(inv_id) if submitted.existed else None
        if result is not None:
            answer(caller, reply_to, ty, result)
        else:
            engine.store.add_subscriber(SubscriberRow(inv_id, caller, reply_to, ty))
    elif kind in ("subscribe", "output"):
        target_id: str = msg["target"]
        subscriber, cid, ty = msg["subscriber"], msg["cid"], msg["type"]
        row = engine.lookup(target_id)
        if row is None:
            answer(subscriber, cid, ty, Result(failure=NOT_FOUND))
            return
        result = engine.completed_result(target_id)
        if result is not None:
            answer(subscriber, cid, ty, result)
        elif kind == "output":
            answer(subscriber, cid, ty, None)
        else:
            engine.store.add_subscriber(SubscriberRow(target_id, subscriber, cid, ty))
    elif kind == "park":
        from durably.kafka.records import Record
        from durably.kafka.service import park

        key = msg["key"]
        park(engine.store, msg["subscription"], Record(
            msg["topic"], msg["partition"], msg["offset"], None if key is None else _unb(key),
            _unb(msg["value"]), msg["timestamp"],
        ), msg["error"])
    elif kind == "cancel":
        engine.cancel(msg["id"])
    elif kind == "kill":
        engine.kill(msg["id"])
    elif kind == "deadlock":
        engine.deadlock_reported(msg["id"], [str(m) for m in msg["cycle"]], str(msg["text"]))
    elif kind == "undeadlock":
        engine.deadlock_broken(msg["id"], [str(m) for m in msg["cycle"]])
    engine._schedule_flush()


def _park_elsewhere(engine: Engine, msg: dict[str, Any], error: str) -> None:
    """An `invoke` made from a Kafka record that cannot be created (its handler went away
    after the consumer checked it): a `park` message to the owner of the record's Kafka
    partition, which parks it as the consumer parks what it cannot deliver; it can be
    replayed or dropped like any parked record."""
    from durably.kafka.records import home_key, record_of_invocation

    found = record_of_invocation([(str(k), str(v)) for k, v in msg["headers"]], _unb(msg["body"]))
    if found is None or engine.partitions is None:
        log.warning("invocation %s of %s/%s not created and not parked (no record named "
                    "in its headers): %s", msg["id"], msg["service"], msg["handler"], error)
        return
    sub_id, record = found
    home = engine.partitions.of_key(home_key(sub_id, record.topic, record.partition))
    send(engine, home, "park", {
        "subscription": sub_id, "topic": record.topic, "partition": record.partition,
        "offset": record.offset, "key": None if record.key is None else _b(record.key),
        "value": _b(record.value or b""), "timestamp": record.timestamp, "error": error,
    })
