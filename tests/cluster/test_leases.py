"""Leases, membership and the commit fence against a real PostgreSQL: two nodes in one
process (each a LeaseKeeper, and a PostgresStore where commits matter), driven tick by
tick so that every step is deterministic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from tests.support.postgres import shared_cluster

from durably.cluster import leases
from durably.cluster.fence import attach
from durably.cluster.keeper import LeaseKeeper
from durably.cluster.schema import ClusterMismatch, migrate
from durably.ids import partition_key_for, partition_of_stored
from durably.storage.postgres import PostgresStore

pytestmark = pytest.mark.timeout(120)

P = 64
LONG_TTL = 60.0  # the background renewal never runs during a test: ticks are explicit


@pytest.fixture
def dsn() -> str:
    """A database of its own on the session's PostgreSQL."""
    return shared_cluster().new_database()


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


def keeper(dsn: str, name: str, ttl_s: float = LONG_TTL, **kw: object) -> LeaseKeeper:
    return LeaseKeeper(dsn, leases.Membership(name, "127.0.0.1", 0, 0), ttl_s=ttl_s, **kw)  # type: ignore[arg-type]


async def owners(db: asyncpg.Connection) -> dict[int, tuple[str, int]]:
    return {r[0]: (r[1], r[2]) for r in await db.fetch("SELECT pid, owner, epoch FROM durably.partition_lease")}


async def expire(db: asyncpg.Connection, node: str) -> None:
    """What the passing of a TTL does, without waiting for it: the database's clock passes
    the node's heartbeat and leases."""
    await db.execute(
        "UPDATE durably.partition_lease SET expires_at = now() - interval '1 s' WHERE owner = $1",
        node,
    )
    await db.execute(
        "UPDATE durably.node SET heartbeat_at = now() - interval '1 hour' WHERE name = $1", node
    )


async def test_two_nodes_split_the_partitions_evenly(dsn: str, db: asyncpg.Connection) -> None:
    a, b = keeper(dsn, "a"), keeper(dsn, "b")
    await a.start()
    assert len(a.held) == P  # alone, it owns everything
    await b.start()
    assert b.held == {}  # nothing is free yet
    await a.tick()  # a sees b and gives back what exceeds its share
    assert len(a.held) == P // 2
    await b.tick()
    assert len(b.held) == P // 2
    assert set(a.held).isdisjoint(b.held)
    rows = await owners(db)
    assert {pid for pid, (o, _) in rows.items() if o == "a"} == set(a.held)
    assert {pid for pid, (o, _) in rows.items() if o == "b"} == set(b.held)
    # every acquisition raised the epoch: b's partitions were a's first
    assert all(rows[p][1] == 2 for p in b.held)
    await a.stop()
    await b.stop()


async def test_clean_stop_hands_partitions_over_at_once(dsn: str, db: asyncpg.Connection) -> None:
    a, b = keeper(dsn, "a"), keeper(dsn, "b")
    await a.start()
    await b.start()
    epochs = dict(a.held)
    await a.stop(release=True)
    rows = await owners(db)
    assert all(rows[p] == ("", epochs[p]) for p in epochs)  # free, not expired later
    await b.tick()  # a left the membership: b's share is everything
    assert set(b.held) == set(range(P))
    assert all(b.held[p] == epochs[p] + 1 for p in epochs)
    await b.stop()


async def test_expired_leases_are_taken_over_and_the_loser_is_told(
    dsn: str, db: asyncpg.Connection
) -> None:
    lost: set[int] = set()
    a = keeper(dsn, "a", on_lost=lost.update)
    b = keeper(dsn, "b")
    await a.start()
    await expire(db, "a")  # a is paused past its TTL
    await b.start()
    assert set(b.held) == set(range(P))
    await a.tick()  # a wakes up: its renewal finds nothing at its epochs
    assert lost == set(range(P)) and a.held == {}
    await a.stop()
    await b.stop()


async def test_a_live_name_is_not_taken_by_a_second_process(dsn: str, db: asyncpg.Connection) -> None:
    a = keeper(dsn, "a")
    await a.start()
    second = leases.Membership("a", "127.0.0.1", 1, 1)
    wait = await second.join(db, LONG_TTL)
    assert 0 < wait <= LONG_TTL
    await expire(db, "a")
    assert await second.join(db, LONG_TTL) == 0.0
    # the first process's heartbeat now fails: it gives everything up
    with pytest.raises(leases.LeaseError):
        await a.tick()
    assert a.held == {}
    await a.stop(release=False)


async def test_partition_count_is_fixed_at_creation(dsn: str, db: asyncpg.Connection) -> None:
    assert await migrate(db, 64) == 64
    assert await migrate(db, 64) == 64
    with pytest.raises(ClusterMismatch, match="created with 64 partitions"):
        await migrate(db, 24)


async def test_takeover_waits_for_a_commit_in_flight_then_fences_it(
    dsn: str, db: asyncpg.Connection
) -> None:
    a = keeper(dsn, "a")
    await a.start()
    epoch = a.held[5]
    await expire(db, "a")
    other = await asyncpg.connect(dsn)
    try:
        async with db.transaction():
            # a's commit is in flight: the fence share-locks the lease row
            await db.execute("SELECT durably.cluster_fence('a', 1, $1, $2)", [5], [epoch])
            takeover = asyncio.ensure_future(leases.take_over(other, "b", 5, 10.0))
            await asyncio.sleep(0.5)
            assert not takeover.done()  # blocked behind the commit, whatever the clocks say
        assert await asyncio.wait_for(takeover, 30) == epoch + 1
        with pytest.raises(asyncpg.PostgresError, match="partition lease lost") as info:
            await db.execute("SELECT durably.cluster_fence('a', 2, $1, $2)", [5], [epoch])
        assert info.value.sqlstate == "DF001"
    finally:
        await other.close()
        await a.stop(release=False)


async def _commit(store: PostgresStore) -> bool:
    """Commit; True once PostgreSQL acknowledged it, False if the store failed instead."""
    done = asyncio.get_running_loop().create_future()
    store.commit()
    store._after_commit([lambda: done.done() or done.set_result(True)], lambda fx: [f() for f in fx])
    deadline = asyncio.get_running_loop().time() + 30
    while not done.done():
        if store._failed is not None:
            return False
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    return True


async def _node_store(dsn: str, k: LeaseKeeper) -> tuple[PostgresStore, list[BaseException]]:
    store = PostgresStore(dsn)
    await store.open()
    fatal: list[BaseException] = []
    store.commit_gate(fatal.append)
    await attach(store, k.fence, k.membership.incarnation)
    return store, fatal


async def test_a_stale_owner_commits_nothing_and_acknowledges_nothing(
    dsn: str, db: asyncpg.Connection
) -> None:
    a, b = keeper(dsn, "a"), keeper(dsn, "b")
    await a.start()
    store_a, fatal_a = await _node_store(dsn, a)
    store_a.set_state("Counter", "alice", b"n", b"1")
    assert await _commit(store_a)

    await expire(db, "a")  # a is paused or cut off past its TTL ...
    await b.start()  # ... and b takes over alice's partition
    pid = partition_of_stored(partition_key_for(key="alice"), P)
    assert pid in b.held
    store_b, fatal_b = await _node_store(dsn, b)
    store_b.set_state("Counter", "alice", b"n", b"2")
    assert await _commit(store_b)

    # a still believes in its epoch and commits: refused, never acknowledged
    store_a.set_state("Counter", "alice", b"n", b"3")
    assert not await _commit(store_a)
    assert fatal_a and "partition lease lost" in str(fatal_a[0])
    assert not fatal_b
    value = await db.fetchval(
        "SELECT value FROM durably.state WHERE service = 'Counter' AND key = 'alice'"
    )
    assert bytes(value) == b"2"
    store_a.close()
    await store_b.aclose()
    await a.stop(release=False)
    await b.stop()


async def test_a_node_cannot_write_a_partition_it_does_not_hold(
    dsn: str, db: asyncpg.Connection
) -> None:
    a, b = keeper(dsn, "a"), keeper(dsn, "b")
    await a.start()
    await b.start()
    await a.tick()
    await b.tick()
    store_b, fatal_b = await _node_store(dsn, b)
    # a key whose partition a holds
    key = next(
        k for k in (f"k{i}" for i in range(1000))
        if partition_of_stored(partition_key_for(key=k), P) in a.held
    )
    store_b.set_state("Counter", key, b"n", b"1")
    assert not await _commit(store_b)
    assert fatal_b
    assert await db.fetchval("SELECT count(*) FROM durably.state") == 0
    store_b.close()
    await a.stop()
    await b.stop(release=False)


async def test_timer_ids_of_two_nodes_never_collide(dsn: str, db: asyncpg.Connection) -> None:
    a, b = keeper(dsn, "a"), keeper(dsn, "b")
    await a.start()
    await b.start()
    store_a, _ = await _node_store(dsn, a)
    store_b, _ = await _node_store(dsn, b)
    assert store_a.add_timer(1, "sleep", "inv_x", 1) != store_b.add_timer(1, "sleep", "inv_y", 1)
    store_a.close()
    store_b.close()
    await a.stop()
    await b.stop()


async def test_a_retired_leader_never_takes_the_leases_again(
    dsn: str, db: asyncpg.Connection
) -> None:
    """Found by the checker (tests/cluster/checker, nemesis `cut`): a leader cut off from
    PostgreSQL dropped its leases and began to stop; its shutdown took seconds, and when
    the next leader was cut off in turn the stopping one took every partition back, so
    batches its stale engine still held passed the fence with the new epochs. A keeper told
    to `retire` (what the node does when it loses its leases) takes nothing any more."""
    a = keeper(dsn, "a", spread=False)
    a.on_lost = lambda pids: a.retire()
    b = keeper(dsn, "b", spread=False)
    await a.start()
    await expire(db, "a")
    await b.start()  # b leads; a wakes and finds its leases gone
    await a.tick()
    assert a.held == {} and a.retired
    await b.stop()  # b hands everything back: all partitions free
    await a.tick()
    assert a.held == {}
    assert {o for o, _ in (await owners(db)).values()} == {""}
    # a keeper that was not retired takes them (what the test above guards against)
    c = keeper(dsn, "c", spread=False)
    await c.start()
    assert len(c.held) == P
    await a.stop()
    await c.stop()


async def test_one_round_is_one_statement_that_renews_beats_and_reads(
    dsn: str, db: asyncpg.Connection
) -> None:
    a, b = keeper(dsn, "a"), keeper(dsn, "b")
    await a.start()
    await b.start()
    await a.tick()
    await b.tick()
    # a lease of a's past its expiry but not taken: renewed, and owned by a as of the round
    mine = min(a.held)
    await db.execute(
        "UPDATE durably.partition_lease SET expires_at = now() - interval '1 s' WHERE pid = $1",
        mine,
    )
    got = await leases.renew_round(a._conn, a.membership, dict(a.held), LONG_TTL)
    assert got.beat and got.renewed == set(a.held)
    assert [n.name for n in got.nodes] == ["a", "b"] and got.nodes[0].heartbeat_age_s == 0.0
    assert got.owners == {**{p: "a" for p in a.held}, **{p: "b" for p in b.held}}
    expires = await db.fetchval(
        "SELECT expires_at > now() FROM durably.partition_lease WHERE pid = $1", mine
    )
    assert expires
    # another process took the name over: it renews nothing
    await expire(db, "a")
    assert await leases.Membership("a", "127.0.0.1", 1, 1).join(db, LONG_TTL) == 0.0
    got = await leases.renew_round(a._conn, a.membership, dict(a.held), LONG_TTL)
    assert not got.beat and got.renewed == set()
    await a.stop(release=False)
    await b.stop()


async def test_an_outbox_notification_names_the_partitions_written_to(
    dsn: str, db: asyncpg.Connection
) -> None:
    await migrate(db, P)
    heard: list[str] = []
    await db.add_listener("durably_outbox", lambda *args: heard.append(args[3]))
    writer = await asyncpg.connect(dsn)
    try:
        await writer.execute(
            "SELECT durably.outbox_write($1, $2, $3, NULL, NULL)",
            [5, 3, 5], ["invoke", "notify", "notify"], [b"a", b"b", b"c"],
        )
        await writer.execute(  # deletions alone notify nobody
            "SELECT durably.outbox_write(NULL, NULL, NULL, $1, $2)", [3], [2]
        )
    finally:
        await writer.close()
    deadline = asyncio.get_running_loop().time() + 10
    while not heard and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert heard == ["3,5"]


async def test_a_retired_node_leaves_its_share_to_the_others(
    dsn: str, db: asyncpg.Connection
) -> None:
    """Found by the checker (spread, seed 17): a node that lost its leases with writes on
    their way retires and stops; while it stopped (its shutdown hung) it went on
    heartbeating, so the others counted it in their shares and left its share unowned:
    requests for those partitions found no owner for minutes. A retired keeper leaves the
    membership: the others take its share at once."""
    a = keeper(dsn, "a")
    a.on_lost = lambda pids: a.retire()
    b = keeper(dsn, "b")
    await a.start()
    await b.start()
    for _ in range(3):
        await a.tick()
        await b.tick()
    assert len(a.held) == len(b.held) == P // 2
    # a was cut off past its TTL and its leases moved on (here: freed); it runs again
    await db.execute(
        "UPDATE durably.partition_lease SET owner = '', epoch = epoch + 1 WHERE owner = 'a'"
    )
    await a.tick()  # finds its leases gone: retires
    assert a.retired and a.held == {}
    await b.tick()
    assert b.live == ["b"]
    assert len(b.held) == P
    await a.tick()  # a stopping node takes nothing back
    assert a.held == {}
    await a.stop(release=False)
    await b.stop()
