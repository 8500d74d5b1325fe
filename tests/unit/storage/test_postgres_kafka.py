"""The PostgreSQL store's Kafka tables against a real PostgreSQL: offsets that never move
back and survive a restart, the offset committed in the transaction of the invocation made
from the record (and refused when another writer took it), parked records, the migration
of a version-1 database, and `POST /query`'s views over them."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from tests.unit.storage.test_postgres import (
    _committed,
    _open,
    _refused,
    cluster,
    dsn,
    row,
    store,
)

from durably.storage.base import ParkedRecordRow
from durably.storage.postgres import PostgresStore
from durably.storage.postgres_query import PostgresIntrospector
from durably.storage.postgres_schema import _V1, LATEST

pytestmark = pytest.mark.timeout(120)
__all__ = ["cluster", "dsn", "store"]  # fixtures, imported for pytest


async def test_offsets_survive_a_restart_and_never_move_back(
    store: PostgresStore, dsn: str
) -> None:
    assert store.put_kafka_offset("sub_a", "g1", "t", 0, 5)
    assert store.put_kafka_offset("sub_a", "g1", "t", 1, 2)
    assert store.put_kafka_offset("sub_a", "g2", "t", 0, 9)
    assert not store.put_kafka_offset("sub_a", "g1", "t", 0, 5)  # seen in the open batch
    store.commit()
    assert store.put_kafka_offset("sub_a", "g1", "t", 0, 6)  # folded with the batch above
    await _committed(store)
    await store.aclose()

    again = await _open(dsn)
    try:
        assert again.kafka_offsets("sub_a", "g1") == {("t", 0): 6, ("t", 1): 2}
        assert again.kafka_offsets("sub_a", "g2") == {("t", 0): 9}
        ops = len(again._ops)
        assert not again.put_kafka_offset("sub_a", "g1", "t", 0, 3)  # an older record
        assert not again.put_kafka_offset("sub_a", "g1", "t", 0, 6)  # the same one
        assert len(again._ops) == ops  # a repeat changes nothing
        assert again.put_kafka_offset("sub_a", "g1", "t", 0, 7)
        again.delete_kafka_offsets("sub_a")
        assert again.kafka_offsets("sub_a", "g1") == {}
        assert again.put_kafka_offset("sub_a", "g1", "t", 0, 1)  # after the delete: anew
        await _committed(again)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                'SELECT group_id, topic, partition, "offset" FROM durably.kafka_offset'
            )
            assert [tuple(r) for r in rows] == [("g1", "t", 0, 1)]
        finally:
            await conn.close()
    finally:
        await again.aclose()


async def test_the_offset_commits_with_the_invocation_or_not_at_all(
    store: PostgresStore, dsn: str
) -> None:
    """Another writer advanced the offset first: the batch (offset and invocation) is
    refused whole, so a record is never taken twice."""
    fatal: list[BaseException] = []
    gate = store.commit_gate(fatal.append)
    assert store.put_kafka_offset("sub_a", "g", "t", 0, 1)
    store.put_invocation(row("inv_1", invoked_by="subscription", invoked_by_id="sub_a"))
    await _committed(store)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute('UPDATE durably.kafka_offset SET "offset" = 2')  # the other writer
        assert store.put_kafka_offset("sub_a", "g", "t", 0, 2)
        store.put_invocation(row("inv_2", invoked_by="subscription", invoked_by_id="sub_a"))
        assert await _refused(store, gate, fatal) == []
        assert "taken already by another writer" in str(fatal[0]), fatal
        ids = [r[0] for r in await conn.fetch("SELECT id FROM durably.invocation")]
        assert ids == ["inv_1"]  # the invocation of the refused record is not in either
    finally:
        await conn.close()


async def test_parked_records_survive_a_restart_and_are_deleted(
    store: PostgresStore, dsn: str
) -> None:
    first = store.park_kafka_record(
        ParkedRecordRow(0, "sub_a", "t", 0, 4, b"\xff", b"v", 123, "bad key", 456)
    )
    second = store.park_kafka_record(
        ParkedRecordRow(0, "sub_b", "t", 1, 1, None, None, 0, "x", 1)
    )
    gone = store.park_kafka_record(ParkedRecordRow(0, "sub_b", "t", 1, 2, None, b"", 0, "y", 1))
    store.delete_parked_record(gone)  # parked and dropped within one batch
    await _committed(store)
    await store.aclose()

    again = await _open(dsn)
    try:
        assert [r.id for r in again.kafka_parked()] == [first, second]
        (only,) = again.kafka_parked("sub_a")
        assert only == ParkedRecordRow(first, "sub_a", "t", 0, 4, b"\xff", b"v", 123, "bad key", 456)
        assert again.park_kafka_record(
            ParkedRecordRow(0, "sub_b", "t", 1, 3, None, None, 0, "z", 1)
        ) > gone  # ids never reused
        again.delete_parked_record(first)
        await _committed(again)
    finally:
        await again.aclose()
    third = await _open(dsn)
    try:
        assert [r.subscription_id for r in third.kafka_parked()] == ["sub_b", "sub_b"]
        assert third.kafka_parked("sub_a") == []
    finally:
        await third.aclose()


async def test_a_version_1_database_is_migrated(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(_V1)
            await conn.execute("INSERT INTO durably.schema_version VALUES (1)")
    finally:
        await conn.close()
    s = await _open(dsn)
    try:
        s.put_invocation(row("inv_a"))
        assert s.put_kafka_offset("sub_a", "g", "t", 0, 1)
        await _committed(s)
    finally:
        await s.aclose()
    s = await _open(dsn)
    try:
        assert s.kafka_offsets("sub_a", "g") == {("t", 0): 1}
        assert s.get_invocation("inv_a") is not None
    finally:
        await s.aclose()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT version FROM durably.schema_version") == LATEST
    finally:
        await conn.close()


async def test_query_reads_parked_records_and_subscription_invocations(
    store: PostgresStore,
) -> None:
    store.put_invocation(row("inv_k", invoked_by="subscription", invoked_by_id="sub_a"))
    store.park_kafka_record(ParkedRecordRow(0, "sub_a", "t", 2, 7, b"k1", b"\xff", 0, "bad", 5))
    await _committed(store)
    introspector = PostgresIntrospector(store)
    parked = await asyncio.to_thread(
        introspector.query,
        "SELECT subscription_id, topic, partition, offset, key_utf8, value, error "
        "FROM durably_kafka_parked_record",
    )
    assert [list(r) for r in parked.rows] == [["sub_a", "t", 2, 7, "k1", b"\xff", "bad"]]
    invs = await asyncio.to_thread(
        introspector.query,
        "SELECT id, invoked_by, invoked_by_id, invoked_by_subscription_id FROM sys_invocation",
    )
    assert [list(r) for r in invs.rows] == [["inv_k", "subscription", None, "sub_a"]]
