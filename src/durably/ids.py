"""Invocation ids and awakeable (signal) ids, in Restate's formats.

An invocation id is a 64-bit partition key (which partition owns the invocation) plus a
128-bit uuid. Its string form is what users see and what the SDKs get in Start.debug_id; its
24-byte form is Start.id, from which the SDKs derive awakeable ids.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass

__all__ = [
    "AWAKEABLE_PREFIX",
    "INVOCATION_ID_PREFIX",
    "InvocationId",
    "awakeable_id",
    "parse_awakeable_id",
    "parse_awakeable_id_bytes",
    "key_range",
    "partition_key_for",
    "partition_of",
    "partition_of_stored",
]

INVOCATION_ID_PREFIX = "inv_1"  # resource "inv", scheme version 1
AWAKEABLE_PREFIX = "sign_1"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGIT = {c: i for i, c in enumerate(_ALPHABET)}
_PK_CHARS = 11  # ceil(64 / 6)
_UUID_CHARS = 22  # ceil(128 / 6)
_STR_LEN = len(INVOCATION_ID_PREFIX) + _PK_CHARS + _UUID_CHARS
_U64 = 1 << 64


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # two digits at a time: half the divmods


def _b62_encode(n: int, width: int) -> str:
    out: list[str] = []
    while n >= 62:
        n, r = divmod(n, 3844)
        out.append(_PAIRS[r])
    if n:
        out.append(_ALPHABET[n])
    return "".join(reversed(out)).rjust(width, "0")


def _b62_decode(s: str) -> int:
    n = 0
    for c in s:
        d = _DIGIT.get(c)
        if d is None:
            raise ValueError(f"invalid base62 character {c!r}")
        n = n * 62 + d
    return n


# Restate encodes `value.to_be()` and runs on little-endian machines, so the number it writes
# in base62 is the byte-swapped value. Reading the big-endian bytes as a little-endian integer
# is that same swap, which keeps our strings identical to Restate's for the same bytes.
def _swap(n: int, size: int) -> int:
    return int.from_bytes(n.to_bytes(size, "big"), "little")


@dataclass(frozen=True, order=True)
class InvocationId:
    partition_key: int  # u64
    uuid: bytes  # 16 bytes, big-endian u128

    def __post_init__(self) -> None:
        if not 0 <= self.partition_key < _U64:
            raise ValueError(f"partition key out of u64 range: {self.partition_key}")
        if len(self.uuid) != 16:
            raise ValueError(f"invocation uuid must be 16 bytes, got {len(self.uuid)}")

    # -- binary form (Start.id) --------------------------------------------------------

    def to_bytes(self) -> bytes:
        return self.partition_key.to_bytes(8, "big") + self.uuid

    @classmethod
    def from_bytes(cls, b: bytes) -> InvocationId:
        if len(b) != 24:
            raise ValueError(f"an invocation id is 24 bytes, got {len(b)}")
        return cls(int.from_bytes(b[:8], "big"), bytes(b[8:]))

    # -- string form ---------------------------------------------------------------------

    def __str__(self) -> str:
        return (
            INVOCATION_ID_PREFIX
            + _b62_encode(_swap(self.partition_key, 8), _PK_CHARS)
            + _b62_encode(int.from_bytes(self.uuid, "little"), _UUID_CHARS)
        )

    @classmethod
    def parse(cls, s: str) -> InvocationId:
        if not isinstance(s, str) or not s.startswith(INVOCATION_ID_PREFIX):
            raise ValueError(f"not an invocation id (expected prefix {INVOCATION_ID_PREFIX!r})")
        if len(s) != _STR_LEN:
            raise ValueError(f"an invocation id has {_STR_LEN} characters, got {len(s)}")
        body = s[len(INVOCATION_ID_PREFIX) :]
        pk_swapped = _b62_decode(body[:_PK_CHARS])
        uuid_swapped = _b62_decode(body[_PK_CHARS:])
        if pk_swapped >= _U64 or uuid_swapped >= 1 << 128:
            raise ValueError("invocation id out of range")
        return cls(_swap(pk_swapped, 8), uuid_swapped.to_bytes(16, "little"))

    # -- generation ----------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        *,
        service: str,
        handler: str,
        key: str | None = None,
        idempotency_key: str | None = None,
        workflow_run: bool = False,
    ) -> InvocationId:
        """A new id for an invocation of service/handler.

        Deterministic for a workflow run (one per workflow key) and for idempotent requests,
        so that a retried submission maps onto the invocation that already exists; random
        (a ULID) otherwise.
        """
        if workflow_run:
            if key is None:
                raise ValueError("a workflow run needs a key")
            uuid = _sha_uuid("wf", service, key)
        elif idempotency_key is not None:
            if not idempotency_key:
                raise ValueError("the idempotency key must not be empty")
            parts = ["ik", service] + ([key] if key is not None else []) + [handler]
            uuid = _sha_uuid(*parts, idempotency_key)
        else:
            uuid = _ulid()
        return cls(partition_key_for(key=key, idempotency_key=idempotency_key), uuid)


def _sha_uuid(*parts: str) -> bytes:
    return hashlib.sha256(b",".join(p.encode() for p in parts)).digest()[:16]


def _ulid() -> bytes:
    # Time-ordered ids keep new rows near each other in B-tree indexes.
    ms = time.time_ns() // 1_000_000
    return (ms & ((1 << 48) - 1)).to_bytes(6, "big") + os.urandom(10)


def _hash64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")


def partition_key_for(*, key: str | None, idempotency_key: str | None = None) -> int:
    """Where an invocation lives: all invocations of one object/workflow key share a partition
    (so its lock and state are local); idempotent calls to unkeyed services are placed by their
    idempotency key so the dedupe lookup is local too; everything else is spread at random."""
    if key is not None:
        return _hash64(key)
    if idempotency_key is not None:
        return _hash64(idempotency_key)
    return int.from_bytes(os.urandom(8), "big")


def partition_of(partition_key: int, num_partitions: int) -> int:
    """The partition owning `partition_key`.

    Partitions own contiguous, equal ranges of the key space (as in Restate) rather than
    residues, so a range scan over one partition's keys is a single index range.
    """
    if num_partitions <= 0:
        raise ValueError("num_partitions must be positive")
    if not 0 <= partition_key < _U64:
        raise ValueError(f"partition key out of u64 range: {partition_key}")
    return (partition_key * num_partitions) >> 64


def partition_of_stored(stored_key: int, num_partitions: int) -> int:
    """The partition of a partition key as the stores keep it (two's complement i64)."""
    return partition_of(stored_key & (_U64 - 1), num_partitions)


def key_range(pid: int, num_partitions: int) -> tuple[int, int]:
    """The u64 partition keys [low, high) of partition `pid` (`partition_of`'s inverse)."""
    if not 0 <= pid < num_partitions:
        raise ValueError(f"partition {pid} outside 0..{num_partitions - 1}")
    return -(-pid * _U64 // num_partitions), -(-(pid + 1) * _U64 // num_partitions)


# -- awakeables / signals --------------------------------------------------------------------


def awakeable_id(invocation_id_bytes: bytes, signal_index: int) -> str:
    """`sign_1` + base64url (no padding) of Start.id ‖ u32 BE signal index."""
    if not 0 <= signal_index < 1 << 32:
        raise ValueError(f"signal index out of u32 range: {signal_index}")
    raw = bytes(invocation_id_bytes) + signal_index.to_bytes(4, "big")
    return AWAKEABLE_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse_awakeable_id_bytes(s: str) -> tuple[bytes, int]:
    """(raw invocation id bytes, signal index), without checking the id bytes' length."""
    if not isinstance(s, str) or not s.startswith(AWAKEABLE_PREFIX):
        raise ValueError(f"not an awakeable id (expected prefix {AWAKEABLE_PREFIX!r})")
    payload = s[len(AWAKEABLE_PREFIX) :].rstrip("=")
    try:
        # Whether or not the sender padded, re-pad to a multiple of 4 and decode strictly.
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (ValueError, TypeError) as e:
        raise ValueError(f"awakeable id is not valid base64url: {e}") from None
    if any(c not in _B64URL for c in payload) or len(raw) < 5:
        raise ValueError("malformed awakeable id")
    return raw[:-4], int.from_bytes(raw[-4:], "big")


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def parse_awakeable_id(s: str) -> tuple[InvocationId, int]:
    raw, index = parse_awakeable_id_bytes(s)
    return InvocationId.from_bytes(raw), index
