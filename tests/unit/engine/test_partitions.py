"""Which partitions an engine owns (durably.engine.partitions) and the outbox's share of a
fenced commit (durably.cluster.fence)."""

from __future__ import annotations

from durably.cluster.fence import Fence
from durably.engine.partitions import Partitions
from durably.ids import InvocationId, partition_key_for, partition_of
from durably.storage.postgres import _OUTBOX, _OUTBOX_DEL, _outbox_arguments


def test_a_local_key_falls_in_an_owned_partition() -> None:
    parts = Partitions(64, {5, 63})
    for _ in range(500):
        key = parts.local_key()
        assert key is not None and 0 <= key < 1 << 64
        assert partition_of(key, 64) in {5, 63}
        assert parts.owns_key(key)
    assert Partitions(64).local_key() is None


def test_ownership_of_ids_and_keys() -> None:
    pk = partition_key_for(key="alice")
    pid = partition_of(pk, 64)
    parts = Partitions(64, {pid})
    inv = str(InvocationId(pk, b"\x01" * 16))
    assert parts.owns_id(inv) and parts.of_id(inv) == pid
    parts.set_owned(set())
    assert not parts.owns_id(inv)
    assert parts.owns_id("not an id")  # nobody else could own it: handled here
    # the store keeps keys as signed 64-bit integers
    assert parts.of_key(pk - (1 << 64) if pk >= 1 << 63 else pk) == pid


def test_consumed_messages_are_fenced_and_sent_ones_are_not() -> None:
    ops = [(_OUTBOX, 7, "notify", b"{}"), (_OUTBOX_DEL, 9, 123), (_OUTBOX, 8, "kill", b"{}")]
    extra = _outbox_arguments(ops)
    assert extra == [[7, 8], ["notify", "kill"], [b"{}", b"{}"], [9], [123]]
    empty_batch: list[list[object]] = [[] for _ in range(23)]
    fence = Fence("n1", 64)
    fence.epochs = {9: 4}
    assert fence.written([*empty_batch, *extra]) == {9}
    assert fence.arguments([*empty_batch, *extra]) == ("n1", [9], [4])
