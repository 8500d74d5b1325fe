"""Which partition a row belongs to and how many partitions each live node should own.

Pure functions, no I/O. Partitions cut the u64 partition key space into contiguous
ranges; which partition a key falls in, and a partition's range, are `durably.ids`'
(`partition_of`, `partition_of_stored` for a key as the store keeps it, `key_range`).
"""

from __future__ import annotations

# 64 partitions. The count is fixed when a cluster's database is created (moving a key to
# another partition would move its state), so it must outlast growth. With an even split the
# busiest node carries one partition more than the idlest; with 64 that is at most 1/9 more
# work up to 7 nodes (7 nodes: 10 vs 9) where Restate's default of 24 gives 4 vs 3 (1/3 more).
# A partition costs little: a lease row renewed together with the node's others in one
# statement, and a share lock taken by each commit that writes it.
DEFAULT_PARTITIONS = 64


def share_of(node: str, live_nodes: list[str], num_partitions: int) -> int:
    """How many partitions `node` should own when `live_nodes` are alive: an even split,
    the first `num_partitions % n` nodes (by name) taking one more."""
    nodes = sorted(set(live_nodes) | {node})
    base, extra = divmod(num_partitions, len(nodes))
    return base + (1 if nodes.index(node) < extra else 0)


def preferred(node: str, live_nodes: list[str], num_partitions: int) -> list[int]:
    """Partitions in the order `node` would rather take them: the ones a stable round-robin
    over the sorted live nodes gives it first, so that nodes starting together do not all
    race for the same rows."""
    nodes = sorted(set(live_nodes) | {node})
    rank, n = nodes.index(node), len(nodes)
    mine = [p for p in range(num_partitions) if p % n == rank]
    return mine + [p for p in range(num_partitions) if p % n != rank]
