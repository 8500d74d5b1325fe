"""What the deadlock search across nodes costs PostgreSQL: one read of what a few
invocations of other nodes' partitions wait on (`cluster/waits.py`), with `N` unfinished
invocations each awaiting a call, with and without the `subscriber (subscriber_id)` index
of store migration 7; and what that index adds to writing subscriber rows.

    flock /tmp/durably-bench.lock env PYTHONPATH=src:. python -m bench.deadlock_waits 1000 100000

Starts a throwaway PostgreSQL (tests/support/postgres.py). Writes are timed as batches of
500 rows inserted and deleted in one transaction each (as a group commit writes them), so
the fsync does not hide the index's share.
"""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg
from tests.support.postgres import shared_cluster

from durably.cluster.waits import HOLDING, WAIT_TYPES, WAITS_SQL
from durably.storage.postgres_schema import migrate


async def _measure(conn: asyncpg.Connection, label: str, n: int) -> None:
    ids = ["inv1", "inv2", "inv3"]
    for _ in range(20):
        await conn.fetch(WAITS_SQL, ids, WAIT_TYPES, HOLDING)
    k = 200
    started = time.perf_counter()
    for _ in range(k):
        await conn.fetch(WAITS_SQL, ids, WAIT_TYPES, HOLDING)
    read_ms = (time.perf_counter() - started) / k * 1000
    rows = [(0, "x", f"s{i}", 1, 1) for i in range(500)]
    batches = 20
    started = time.perf_counter()
    for _ in range(batches):
        async with conn.transaction():
            await conn.executemany("INSERT INTO durably.subscriber VALUES ($1, $2, $3, $4, $5)", rows)
        async with conn.transaction():
            await conn.execute("DELETE FROM durably.subscriber WHERE target_id = 'x'")
    write_us = (time.perf_counter() - started) / (batches * len(rows)) * 1e6
    print(f"| {label} | {n:,} | {read_ms:.2f} ms | {write_us:.1f} µs |")


async def main(sizes: list[int]) -> None:
    print("| index | unfinished invocations | one read (3 ids) | a subscriber row written and deleted |")
    print("|---|---|---|---|")
    for n in sizes:
        conn = await asyncpg.connect(shared_cluster().new_database())
        try:
            await migrate(conn)
            await conn.execute(
                "INSERT INTO durably.invocation(id, partition_key, service, handler, key, "
                "service_ty, handler_ty, status, created_at, modified_at, invoked_by) "
                "SELECT 'inv' || g, g, 'CallChain', 'hop', 'k' || g, 'virtual_object', "
                "'exclusive', 'suspended', 0, 0, 'ingress' FROM generate_series(1, $1) g", n)
            await conn.execute(
                "INSERT INTO durably.subscriber SELECT g, 'inv' || (g % $1 + 1), 'inv' || g, 1, $2 "
                "FROM generate_series(1, $1) g", n, WAIT_TYPES[0])
            await conn.execute("ANALYZE")
            await _measure(conn, "with", n)
            await conn.execute("DROP INDEX durably.subscriber_by_subscriber")
            await conn.execute("ANALYZE")
            await _measure(conn, "without", n)
        finally:
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [1000, 100_000]))
