"""What the deadlock search reads about invocations of other nodes' partitions
(durably.cluster.waits) from a real PostgreSQL: awaited calls and attaches that have not
completed, and the holder of an inboxed invocation's key; nothing else."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from tests.support.postgres import shared_cluster

from durably.cluster.side import SideConnection
from durably.cluster.waits import WaitsReader
from durably.engine.deadlock import Waits
from durably.ids import partition_key_for
from durably.protocol.messages import MessageType
from durably.storage.postgres_schema import migrate

pytestmark = pytest.mark.timeout(120)

CALL = int(MessageType.CALL_COMPLETION)
ATTACH = int(MessageType.ATTACH_INVOCATION_COMPLETION)
OUTPUT = int(MessageType.GET_INVOCATION_OUTPUT_COMPLETION)


def _pk(key: str | None) -> int:
    pk = partition_key_for(key=key)
    return pk - (1 << 64) if pk >= 1 << 63 else pk  # stored as a signed bigint


async def _invocation(
    conn: asyncpg.Connection, inv_id: str, key: str | None, status: str,
    handler_ty: str | None = "exclusive", service_ty: str = "virtual_object",
    service: str = "CallChain",
) -> None:
    await conn.execute(
        "INSERT INTO durably.invocation(id, partition_key, service, handler, key, service_ty, "
        "handler_ty, status, created_at, modified_at, invoked_by) "
        "VALUES ($1, $2, $3, 'hop', $4, $5, $6, $7, 0, 0, 'ingress')",
        inv_id, _pk(key), service, key, service_ty, handler_ty, status,
    )


async def _waits_for(conn: asyncpg.Connection, subscriber: str, target: str, ty: int, cid: int) -> None:
    await conn.execute(
        "INSERT INTO durably.subscriber VALUES ($1, $2, $3, $4, $5)",
        0, target, subscriber, cid, ty,
    )


async def test_the_waits_of_other_nodes_invocations_as_the_database_has_them() -> None:
    dsn = shared_cluster().new_database()
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        # key b: a suspended exclusive holder, one queued behind it, a shared handler
        # running beside it, an earlier completed one
        await _invocation(conn, "holder", "b", "suspended")
        await _invocation(conn, "queued", "b", "inboxed")
        await _invocation(conn, "queued2", "b", "inboxed")
        await _invocation(conn, "shared", "b", "invoked", handler_ty="shared")
        await _invocation(conn, "done", "b", "completed")
        await _invocation(conn, "other-key", "c", "invoked")
        # the holder awaits a call and an attach; a completed call and a get-output are
        # no waits
        await _invocation(conn, "callee", "d", "suspended")
        await _invocation(conn, "attached", None, "invoked", handler_ty=None, service_ty="service",
                          service="Stepper")
        await _waits_for(conn, "holder", "callee", CALL, 1)
        await _waits_for(conn, "holder", "callee", CALL, 2)  # called twice: one edge
        await _waits_for(conn, "holder", "attached", ATTACH, 3)
        await _waits_for(conn, "holder", "done", CALL, 4)
        await _waits_for(conn, "holder", "other-key", OUTPUT, 5)
        # a holder of key e that is paused still holds it
        await _invocation(conn, "paused", "e", "paused")
        await _invocation(conn, "queued-e", "e", "inboxed")

        side = SideConnection(lambda: asyncpg.connect(dsn))
        read = WaitsReader(side)
        try:
            got = await read({"holder", "queued", "queued-e", "shared", "nowhere"})
            holder = got.pop("holder")  # (its edges in no particular order)
            assert holder.target == "CallChain/b/hop" and not holder.queued
            assert sorted(holder.waits_on) == ["attached", "callee"]
            assert got == {
                "queued": Waits("CallChain/b/hop", True, ("holder",)),
                "queued-e": Waits("CallChain/e/hop", True, ("paused",)),
                "shared": Waits("CallChain/b/hop", False, ()),
            }
            # a connection that broke is opened again for the next read
            await side._conn.close()
            again = await read({"queued"})
            assert again == {"queued": Waits("CallChain/b/hop", True, ("holder",))}
        finally:
            await side.close()
    finally:
        await conn.close()


async def test_the_side_connection_is_kept_while_used_and_closed_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from durably.cluster import side as side_mod

    monkeypatch.setattr(side_mod, "IDLE_CLOSE_S", 0.3)
    dsn = shared_cluster().new_database()
    opened: list[asyncpg.Connection] = []

    async def connect() -> asyncpg.Connection:
        opened.append(await asyncpg.connect(dsn))
        return opened[-1]

    side = SideConnection(connect)
    try:
        for _ in range(3):  # used again and again: one connection
            assert await side.run(lambda c: c.fetchval("SELECT 1")) == 1
        assert len(opened) == 1
        deadline = asyncio.get_running_loop().time() + 10
        while not opened[0].is_closed() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert opened[0].is_closed()  # idle: closed
        assert await side.run(lambda c: c.fetchval("SELECT 2")) == 2  # and opened again
        assert len(opened) == 2
        # a use that fails drops the connection; the next one reconnects
        with pytest.raises(asyncpg.PostgresError):
            await side.run(lambda c: c.fetchval("SELECT 1/0"))
        assert opened[1].is_closed()
        assert await side.run(lambda c: c.fetchval("SELECT 3")) == 3
    finally:
        await side.close()
