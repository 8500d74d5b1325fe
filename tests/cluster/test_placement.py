"""Partition arithmetic of the cluster: even shares, key ranges, stored (signed) keys."""

from __future__ import annotations

import pytest

from durably.cluster.placement import (
    DEFAULT_PARTITIONS,
    key_range,
    partition_of_stored,
    preferred,
    share_of,
)
from durably.ids import partition_of


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
