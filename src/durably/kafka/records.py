"""From a Kafka record to an invocation, as Restate builds it (sans-IO).

The record value is the handler's input (empty if null); the record key, as UTF-8, is the
object or workflow key (no key: ""); the invocation carries the headers `kafka.offset`,
`kafka.topic`, `kafka.partition`, `kafka.timestamp`, `restate.subscription.id` and, when
the record has a key, `kafka.key` (base64url). The record's own Kafka headers are not
forwarded (Restate does not either).

Under the spread placement a Kafka partition's offset row and parked records share one
cluster partition (`home_key`), and an invocation's headers are enough to park the record
it came from again (`record_of_invocation`) on that partition's owner.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from durably.ids import partition_key_for


class Unusable(Exception):
    """The record cannot become an invocation of the sink (it is parked instead)."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # epoch ms


def invocation_headers(record: Record, subscription_id: str) -> list[tuple[str, str]]:
    headers = [
        ("kafka.offset", str(record.offset)),
        ("kafka.topic", record.topic),
        ("kafka.partition", str(record.partition)),
        ("kafka.timestamp", str(record.timestamp)),
        ("restate.subscription.id", subscription_id),
    ]
    if record.key is not None:
        headers.append(("kafka.key", base64.urlsafe_b64encode(record.key).decode()))
    return headers


def invocation_key(record: Record, service_ty: str) -> str | None:
    """The object/workflow key of the invocation (None for a plain service)."""
    if service_ty == "service":
        return None
    if record.key is None:
        return ""
    try:
        return record.key.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Unusable(f"The Kafka record key must be valid UTF-8: {e.reason}") from None


def home_key(subscription_id: str, topic: str, partition: int) -> int:
    """The partition key of a Kafka partition's offset row and parked records."""
    return partition_key_for(key=f"{subscription_id}/{topic}/{partition}")


def record_of_invocation(
    headers: list[tuple[str, str]], body: bytes
) -> tuple[str, Record] | None:
    """The subscription and the record an invocation was made from, read back from the
    headers `invocation_headers` gave it (None: not made from a record). A null value
    comes back empty, as the invocation's input had it."""
    h = dict(headers)
    try:
        key = h.get("kafka.key")
        record = Record(
            h["kafka.topic"], int(h["kafka.partition"]), int(h["kafka.offset"]),
            None if key is None else base64.urlsafe_b64decode(key), body,
            int(h["kafka.timestamp"]),
        )
        return h["restate.subscription.id"], record
    except (KeyError, ValueError, binascii.Error):
        return None
