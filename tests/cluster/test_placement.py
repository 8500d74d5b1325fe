"""Partition arithmetic of the cluster: even shares, key ranges, stored (signed) keys."""

from __future__ import annotations

import pytest

from durably.cluster.placement import DEFAULT_PARTITIONS, preferred, share_of
from durably.ids import key_range, partition_of, partition_of_stored


@pytest.mark.parametrize("n", range(1, 11))
def test_shares_cover_every_partition_and_differ_by_at_most_one(n: int) -> None:
    nodes = [f"node-{i}" for i in range(n)]
    shares = [share_of(node, nodes, DEFAULT_PARTITIONS) for node in nodes]
    assert sum(shares) == DEFAULT_PARTITIONS
    assert max(shares) - min(shares) <= 1


def test_preferred_orders_split_the_partitions_between_nodes() -> None:
    nodes = ["a", "b", "c"]
    firsts = [preferred(n, nodes, 64)[: share_of(n, nodes, 64)] for n in nodes]
    assert sorted(p for f in firsts for p in f) == list(range(64))


def test_key_ranges_agree_with_partition_of() -> None:
    for pid in (0, 1, 31, 63):
        low, high = key_range(pid, 64)
        assert partition_of(low, 64) == pid
        assert partition_of(high - 1, 64) == pid
    assert key_range(0, 64)[0] == 0
    assert key_range(63, 64)[1] == 1 << 64


def test_stored_keys_in_twos_complement_map_back() -> None:
    top = (1 << 64) - 5
    assert partition_of_stored(top - (1 << 64), 64) == partition_of(top, 64) == 63
    assert partition_of_stored(7, 64) == 0


def test_the_fence_names_the_partition_of_every_row_a_batch_writes() -> None:
    """Guards the coupling of `Fence.written` to the store's compiled batch layout."""
    from durably.cluster.fence import Fence
    from durably.ids import InvocationId, partition_key_for
    from durably.storage.base import InvocationRow, SubscriberRow
    from durably.storage.postgres import PostgresStore, _compile

    def pid_of_key(key: str) -> int:
        return partition_of(partition_key_for(key=key), 64)

    inv = InvocationId.generate(
        service="S", handler="h", key="inv-key", idempotency_key=None, workflow_run=False
    )
    gone = InvocationId.generate(
        service="S", handler="h", key="gone-key", idempotency_key=None, workflow_run=False
    )
    store = PostgresStore("postgresql://unused")
    store.put_invocation(InvocationRow(
        id=str(inv), partition_key=inv.partition_key, service="S", handler="h", key="inv-key",
        service_ty="virtual_object", handler_ty="exclusive", status="invoked", created_at=1,
        modified_at=1,
    ))
    store.append_journal(str(inv), 0, 1, b"x", 1)
    store.delete_invocation(str(gone))
    expected = {pid_of_key("inv-key"), pid_of_key("gone-key")}
    for name, key in (("st", "state-key"), ("pr", "promise-key"), ("li", "listener-key")):
        expected.add(pid_of_key(key))
        if name == "st":
            store.set_state("S", key, b"n", b"v")
        elif name == "pr":
            store.set_promise("S", key, "p", b"v")
        else:
            store.add_promise_listener("S", key, "p", str(inv), 1)
    store.clear_state("S", "cleared-key", b"n")
    expected.add(pid_of_key("cleared-key"))
    store.add_subscriber(SubscriberRow(str(inv), str(inv), 2, 3))
    store.add_timer(5, "sleep", str(inv), 1)
    assert Fence("n", 64).written(_compile(store._ops, store)) == expected
