"""Reads that go through a connection a network cut black-holed: they give up instead of
waiting for good (a node's admin SQL once hung on its pooled connection after a cut)."""

from __future__ import annotations

import asyncio
import threading
import types

import pytest
from tests.support.postgres import shared_cluster
from tests.support.tcp_proxy import BlackholeProxy

from durably.storage.introspection import QueryError
from durably.storage.postgres_query import PostgresIntrospector
from durably.storage.postgres_schema import migrate

pytestmark = pytest.mark.timeout(180)

COUNT = "SELECT count(*) AS n FROM sys_invocation"


async def _migrate(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def test_admin_sql_on_a_black_holed_connection_gives_up_and_recovers() -> None:
    pg = shared_cluster()
    dsn = pg.new_database()
    asyncio.run(_migrate(dsn))
    proxy = BlackholeProxy(pg.port)
    introspector = PostgresIntrospector(
        types.SimpleNamespace(dsn=dsn.replace(f":{pg.port}/", f":{proxy.port}/")), timeout_s=1.0
    )
    try:
        assert introspector.query(COUNT).rows == [(0,)]  # a pooled connection, kept idle
        proxy.blackhole()
        outcome: list[object] = []

        def query() -> None:
            try:
                outcome.append(introspector.query(COUNT))
            except Exception as e:  # what the caller gets, checked below
                outcome.append(e)

        waiting = threading.Thread(target=query, daemon=True)
        waiting.start()
        waiting.join(120)
        assert not waiting.is_alive(), "the query waited for good on a black-holed connection"
        assert isinstance(outcome[0], QueryError), outcome
        assert "did not answer" in str(outcome[0])
        proxy.heal()
        assert introspector.query(COUNT).rows == [(0,)]  # on a new connection
    finally:
        introspector.close()
        proxy.close()


def test_a_cluster_wide_read_of_parked_records_gives_up_on_a_black_holed_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`GET /kafka-parked`'s cluster-wide read (and Kafka backpressure's lookups) go through
    the node's side connection: on a cut it neither answers nor fails, so the read gives up
    after the side connection's timeout (the admin API answers 503) and the next one,
    healed, works on a new connection."""
    from durably.cluster import side as side_mod
    from durably.storage import postgres

    monkeypatch.setattr(side_mod, "QUERY_TIMEOUT_S", 1.0)
    pg = shared_cluster()
    dsn = pg.new_database()
    asyncio.run(_migrate(dsn))
    proxy = BlackholeProxy(pg.port)
    store = postgres.PostgresStore(dsn.replace(f":{pg.port}/", f":{proxy.port}/"))

    async def read() -> object:
        reading = asyncio.ensure_future(store.all_kafka_parked())
        done, _ = await asyncio.wait([reading], timeout=60)
        if not done:
            reading.cancel()
            return "hung"
        return reading.exception() or reading.result()

    async def scenario() -> None:  # (one loop: the side connection is kept between reads)
        store.side = side_mod.SideConnection(store.read_connection)
        try:
            assert await read() == []
            proxy.blackhole()
            outcome = await read()
            assert isinstance(outcome, TimeoutError), repr(outcome)
            proxy.heal()
            assert await read() == []
        finally:
            await store.side.close()

    try:
        asyncio.run(scenario())
    finally:
        proxy.close()
