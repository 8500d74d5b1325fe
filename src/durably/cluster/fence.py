"""The fence a node's PostgreSQL store passes on every commit.

`PostgresStore` calls `commit_sql` / `arguments` instead of its plain commit when a fence
is attached: the batch and `durably.cluster_fence(...)` run as one statement, so one round
trip and one transaction. The fence names every partition the batch writes with the epoch
this node holds it at; a partition it does not hold goes in with epoch -1, which no lease
has, so such a batch is refused as well (a node writes only partitions it owns).
"""

from __future__ import annotations

from typing import Any

from durably.ids import InvocationId, partition_key_for, partition_of, partition_of_stored
from durably.storage.postgres import COMMIT_ARITY

# the positions of `storage.postgres._compile`'s arguments that carry partition keys
# journal, state, promise, listeners, subs, timers, Kafka offsets, parked Kafka records
_ROWS_KEYED_AT_0 = (4, 8, 12, 13, 14, 15, 16, 18, 20, 22)
_INVOCATION_ROWS = 2  # invocation rows: partition_key is their second column
_INVOCATION_IDS = (1, 3)  # deleted invocations, cleared journals
_STATE_DEL_KEYS = 6
_PROMISE_DEL_KEYS = 10
# after the commit's own arrays: the outbox's (`storage.postgres._outbox_arguments`):
# added (pids, kinds, bodies), consumed (pids, ids)
_OUTBOX_ARRAYS = 5
_OUTBOX_DEL_PIDS = COMMIT_ARITY - 1 + 3
_ALL = COMMIT_ARITY + _OUTBOX_ARRAYS


_RULE_LOCK = 0x64757261626C72  # creating the writer rule (nodes may start together)


class Fence:
    """The epochs this node holds, and how a batch's commit proves them."""

    commit_sql = (
        "SELECT durably.commit_batch("
        + ", ".join(f"${i}" for i in range(1, COMMIT_ARITY + 1))
        + "), durably.outbox_write("
        + ", ".join(f"${i}" for i in range(COMMIT_ARITY + 1, _ALL + 1))
        + f") FROM durably.cluster_fence(${_ALL + 1}, $1, ${_ALL + 2}, ${_ALL + 3})"
    )

    def __init__(self, node: str, num_partitions: int) -> None:
        self.node = node
        self.num_partitions = num_partitions
        self.epochs: dict[int, int] = {}  # pid -> epoch, kept by the LeaseKeeper

    def holds(self, pid: int) -> bool:
        return pid in self.epochs

    def written(self, args: list[Any]) -> set[int]:
        """The partitions a compiled batch writes. Deleted timers carry no partition key:
        a timer is deleted in the same step that writes its invocation (it fired, or the
        invocation ended), so that invocation's row names the partition."""
        n = self.num_partitions
        pids: set[int] = set()
        for at in _ROWS_KEYED_AT_0:
            for row in args[at]:
                pids.add(partition_of_stored(row[0], n))
        for row in args[_INVOCATION_ROWS]:
            pids.add(partition_of_stored(row[1], n))
        for at in _INVOCATION_IDS:
            for inv_id in args[at]:
                try:
                    pids.add(partition_of(InvocationId.parse(inv_id).partition_key, n))
                except ValueError:
                    pass
        for at in (_STATE_DEL_KEYS, _PROMISE_DEL_KEYS):
            for key in args[at]:
                pids.add(partition_of(partition_key_for(key=key), n))
        if len(args) > _OUTBOX_DEL_PIDS:
            # a consumed message belongs to its target's partition (added ones do not:
            # they are written for another node's partition)
            pids.update(args[_OUTBOX_DEL_PIDS])
        return pids

    def arguments(self, args: list[Any]) -> tuple[str, list[int], list[int]]:
        """The fence's arguments (after the commit's own) for a batch."""
        pids = sorted(self.written(args))
        return self.node, pids, [self.epochs.get(p, -1) for p in pids]

    async def committed_seq(self, conn: Any) -> int:
        """The sequence number of this node's last committed batch."""
        seq = await conn.fetchval("SELECT writer_seq FROM durably.node WHERE name = $1", self.node)
        return int(seq or 0)


async def attach(store: Any, fence: Fence, incarnation: str) -> None:
    """Make `store` (an opened PostgresStore) commit through `fence`.

    Its writer's sequence continues from where the store loaded it, recorded on this node's
    row; timer ids come from a block of the cluster-wide sequence, so that two nodes never
    hand out the same id (the store alone counts from the largest id it loaded)."""
    conn = await store.read_connection()
    try:
        await conn.execute(
            "UPDATE durably.node SET writer_seq = $2 WHERE name = $1 AND incarnation = $3",
            fence.node, store._durable_seq, incarnation,
        )
        block = int(await conn.fetchval("SELECT nextval('durably.timer_block')"))
        from durably.cluster.schema import REGISTRY_NOTIFY, WRITER_PER_NODE

        has_rule = await conn.fetchval(
            "SELECT 1 FROM pg_rules WHERE schemaname = 'durably' AND rulename = 'writer_per_node'"
        )
        if not has_rule:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _RULE_LOCK)
                await conn.execute(WRITER_PER_NODE)
        if not await _has_registry_trigger(conn):
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _RULE_LOCK)
                if not await _has_registry_trigger(conn):  # another node was first
                    await conn.execute(REGISTRY_NOTIFY)
    finally:
        await conn.close()
    store._next_timer = block << 32
    # its connections name the node (its commits then leave `durably.writer` alone,
    # cluster.schema's writer_per_node)
    store.node_name = fence.node
    if store._conn is not None:
        await store._conn.execute("SELECT set_config('durably.node', $1, false)", fence.node)
    store.fence = fence


async def _has_registry_trigger(conn: Any) -> bool:
    """Whether this version's trigger is there (an earlier one notified registry changes
    only, not the Kafka document's)."""
    return bool(await conn.fetchval(
        "SELECT 1 FROM pg_trigger WHERE tgname = 'registry_changed' "
        "AND tgrelid = 'durably.meta'::regclass "
        "AND strpos(pg_get_triggerdef(oid), $1) > 0",
        "'kafka'",
    ))
