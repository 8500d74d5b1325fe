"""The PostgreSQL backend against a real PostgreSQL: every table through a commit and a
reload, effects held until COMMIT, journal rows as plain inserts, a lost COMMIT answer,
reconnecting, refusals, migrations and connection errors."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from tests.support.postgres import PostgresCluster, shared_cluster
from tests.unit.storage.test_sqlite import row as sqlite_row

from durably.storage.base import InvocationRow, SubscriberRow
from durably.storage.postgres import PostgresStore
from durably.storage.postgres_schema import LATEST
from durably.storage.sqlite import StorageError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster() -> PostgresCluster:
    return shared_cluster()


@pytest.fixture
def dsn(cluster: PostgresCluster) -> str:
    return cluster.new_database()


async def _open(dsn: str) -> PostgresStore:
    store = PostgresStore(dsn)
    await store.open()
    return store


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresStore]:
    s = await _open(dsn)
    try:
        yield s
    finally:
        await s.aclose()


def row(inv_id: str, **changes: object) -> InvocationRow:
    # a partition key above i64: stored in two's complement
    return sqlite_row(inv_id, **{"partition_key": (1 << 64) - 5, **changes})


async def _committed(store: PostgresStore) -> None:
    """Commit and wait until PostgreSQL acknowledged it (as the engine's effects do)."""
    done = asyncio.get_running_loop().create_future()
    store.commit()
    store._after_commit([lambda: done.done() or done.set_result(None)], lambda fx: [f() for f in fx])
    await asyncio.wait_for(done, 30)


async def _refused(store: PostgresStore, gate: Any, fatal: list[BaseException]) -> list[str]:
    """Commit what is open, expecting PostgreSQL to refuse it: waits for the fatal report and
    returns the effects that ran (none may)."""
    store.commit()
    answered: list[str] = []
    gate.after_sync([lambda: answered.append("x")], lambda fx: [f() for f in fx])
    for _ in range(200):
        if fatal:
            break
        await asyncio.sleep(0.05)
    assert fatal, "a refused commit must stop the store"
    return answered


async def test_every_table_survives_a_reload(store: PostgresStore, dsn: str) -> None:
    store.save_meta("registry", b"{}")
    full = row("inv_a", idempotency_key="ik", result=b"V1", extra={"retry_base": 2}, expires_at=5)
    store.put_invocation(full)
    store.put_invocation(row("inv_b", status="completed", created_at=999))
    for i in range(3):
        store.append_journal("inv_a", i, 1024 + i, b"entry%d" % i, 7)
    store.set_state("Counter", "alice", b"n", b"1")
    store.set_state("Counter", "alice", b"m", b"2")
    store.clear_state("Counter", "alice", b"m")
    store.set_promise("Wf", "w1", "p", b"V")
    store.add_promise_listener("Wf", "w1", "q", "inv_a", 3)
    store.add_subscriber(SubscriberRow("inv_b", "inv_a", 4, 2))
    t1 = store.add_timer(50, "sleep", "inv_a", 1)
    t2 = store.add_timer(40, "invoke", "inv_a", 0)
    store.delete_timer(t1)
    await _committed(store)
    await store.aclose()

    again = await _open(dsn)
    try:
        assert again.load_meta("registry") == b"{}"
        assert again.get_invocation("inv_a") == full
        assert [r.id for r in again.active_invocations()] == ["inv_a"]
        assert again.load_journal("inv_a") == [(1024 + i, b"entry%d" % i) for i in range(3)]
        assert again.all_state("Counter", "alice") == [(b"n", b"1")]
        assert again.get_promise("Wf", "w1", "p") == b"V"
        assert again.take_promise_listeners("Wf", "w1", "q") == [("inv_a", 3)]
        assert again.children_of("inv_a", 2) == ["inv_b"]
        assert [t.id for t in again.all_timers()] == [t2]
        assert again.add_timer(1, "sleep", "inv_a", 9) > t2  # ids never reused
        assert [r.id for r in again.expired_invocations(10, 10)] == ["inv_a"]
        assert [r.id for r in again.expired_invocations(10, 10)] == ["inv_a"]  # until purged
        assert again.expired_invocations(4, 10) == []
        again.put_invocation(dataclasses.replace(full, expires_at=50))  # retention moved
        assert again.expired_invocations(10, 10) == []
        again.delete_invocation("inv_a")
        assert again.expired_invocations(100, 10) == []
    finally:
        await again.aclose()


async def test_a_batch_folds_to_its_last_write(store: PostgresStore, dsn: str) -> None:
    store.put_invocation(row("inv_a"))
    store.append_journal("inv_a", 0, 1, b"old", 1)
    await _committed(store)
    # deleted and written again in one batch; cleared state and a re-added subscriber
    store.delete_invocation("inv_a")
    # the same id made anew (an idempotency key used again after its retention's end):
    # every column is the new row's, not only those an update of a live row changes
    store.put_invocation(
        row("inv_a", status="suspended", created_at=5000, random_seed=77, idempotency_key="ik")
    )
    store.append_journal("inv_a", 0, 1, b"new", 2)
    store.set_state("S", "k", b"a", b"1")
    store.clear_all_state("S", "k")
    store.set_state("S", "k", b"b", b"2")
    store.add_subscriber(SubscriberRow("inv_x", "inv_a", 1, 2))
    assert [s.subscriber_id for s in store.take_subscribers("inv_x")] == ["inv_a"]
    store.add_subscriber(SubscriberRow("inv_x", "inv_a", 1, 3))
    store.commit()
    store.put_invocation(row("inv_c"))  # a second step, folded into the same send
    await _committed(store)
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchrow(
            "SELECT status, created_at, random_seed, idempotency_key FROM durably.invocation "
            "WHERE id='inv_a'"
        ) == ("suspended", 5000, 77, "ik")
        assert await conn.fetch("SELECT body FROM durably.journal") == [(b"new",)]
        assert await conn.fetch("SELECT name, value FROM durably.state") == [(b"b", b"2")]
        assert await conn.fetch("SELECT notification_type FROM durably.subscriber") == [(3,)]
        assert await conn.fetchval("SELECT count(*) FROM durably.invocation") == 2
    finally:
        await conn.close()


async def test_effects_wait_for_the_commit(store: PostgresStore, cluster: PostgresCluster) -> None:
    ran: list[str] = []
    gate = store.commit_gate(lambda e: ran.append(f"fatal {e}"))
    # hold the writer inside its transaction: a lock on the row every commit updates
    blocker = await asyncpg.connect(store.dsn)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("SELECT * FROM durably.writer FOR UPDATE")
    store.put_invocation(row("inv_a"))
    store.commit()
    gate.after_sync([lambda: ran.append("answered")], lambda fx: [f() for f in fx])
    await asyncio.sleep(0.5)
    assert ran == []  # not before PostgreSQL committed
    await tx.rollback()
    await blocker.close()
    for _ in range(100):
        if ran:
            break
        await asyncio.sleep(0.05)
    assert ran == ["answered"]


async def test_a_step_no_effect_waits_for_joins_the_next_commit(
    store: PostgresStore, dsn: str
) -> None:
    store.idle_commit_s = 60.0  # held until an effect needs it
    store.put_invocation(row("inv_a"))
    store.append_journal("inv_a", 0, 1, b"run command", 1)
    store.commit()  # a step nothing waits for (the SDK's ctx.run command)
    await asyncio.sleep(0.3)
    assert await _rows(dsn, "SELECT count(*) FROM durably.journal") == [(0,)]
    store.append_journal("inv_a", 1, 2, b"run result", 2)
    await _committed(store)  # a step whose effect (the run's ack) waits: both go out
    assert await _rows(dsn, "SELECT idx FROM durably.journal ORDER BY idx") == [(0,), (1,)]
    assert store.commits == 1


@pytest.mark.parametrize("running, delay_s", [(3, 2.0), (2, 60.0)])
async def test_a_busy_store_lets_steps_sealed_during_its_delay_share_a_commit(
    store: PostgresStore, dsn: str, running: int, delay_s: float
) -> None:
    # the spread placement's busy-commit delay: several attempts running, steps sealed
    # often; a step sealed while the writer waits joins the commit of the one before it,
    # and neither is acknowledged before that commit. With 3 attempts running the batch
    # waits for a third step until the delay ends (2 s); with 2 it goes out as soon as
    # each has sealed one (nobody else can join: a delay of a minute would outlast the wait)
    store.commit_delay_s = delay_s
    store.in_flight = lambda: running
    store._seal_gap = 0.0
    acked: list[str] = []
    gate = store.commit_gate(lambda e: acked.append(f"fatal {e}"))
    store.put_invocation(row("inv_a"))
    store.commit()
    gate.after_sync([lambda: acked.append("a")], lambda fx: [f() for f in fx])
    await asyncio.sleep(0.2)  # the writer is in its delay
    assert acked == [] and await _rows(dsn, "SELECT count(*) FROM durably.invocation") == [(0,)]
    store.put_invocation(row("inv_b"))
    await _committed(store)
    assert acked == ["a"]
    assert await _rows(dsn, "SELECT id FROM durably.invocation ORDER BY id") == [
        ("inv_a",), ("inv_b",)
    ]
    assert store.commits == 1


async def test_a_lone_invocation_is_not_delayed(store: PostgresStore, dsn: str) -> None:
    # one invocation in flight: its next step waits for this commit, so no delay applies
    # (a delay of a minute would outlast the wait below)
    store.commit_delay_s = 60.0
    store.in_flight = lambda: 1
    store._seal_gap = 0.0
    store.put_invocation(row("inv_a"))
    await _committed(store)
    assert await _rows(dsn, "SELECT id FROM durably.invocation") == [("inv_a",)]


async def test_a_held_step_is_committed_without_an_effect(store: PostgresStore, dsn: str) -> None:
    store.idle_commit_s = 0.05
    store.put_invocation(row("inv_a"))
    store.commit()
    for _ in range(200):
        if await _rows(dsn, "SELECT id FROM durably.invocation") == [("inv_a",)]:
            break
        await asyncio.sleep(0.05)
    assert await _rows(dsn, "SELECT id FROM durably.invocation") == [("inv_a",)]


async def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_journal_entries_are_never_overwritten(store: PostgresStore, dsn: str) -> None:
    """A second writer of an entry fails (the ground issue 12's fencing stands on)."""
    fatal: list[BaseException] = []
    gate = store.commit_gate(fatal.append)
    store.put_invocation(row("inv_a"))
    store.append_journal("inv_a", 0, 1, b"mine", 1)
    await _committed(store)
    conn = await asyncpg.connect(dsn)
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO durably.journal VALUES (0, 'inv_a', 1, 1, 'x', 1), "
                "(0, 'inv_a', 0, 1, 'theirs', 1)"
            )
        # an entry somebody else wrote first: this store's batch is refused, never merged
        await conn.execute("INSERT INTO durably.journal VALUES (0, 'inv_a', 1, 1, 'theirs', 1)")
    finally:
        await conn.close()
    store.append_journal("inv_a", 1, 1, b"mine", 2)
    assert await _refused(store, gate, fatal) == []
    assert "23505" in str(fatal[0])
    with pytest.raises(StorageError):
        store.put_invocation(row("inv_b"))


async def test_a_lost_commit_answer_is_not_written_twice(
    store: PostgresStore, dsn: str
) -> None:
    """The connection dies after COMMIT: the resent batch is recognised by its sequence."""
    store.put_invocation(row("inv_a"))
    store.append_journal("inv_a", 0, 1, b"e0", 1)
    await _committed(store)
    seq = store._durable_seq
    conn = await asyncpg.connect(dsn)
    try:
        # the writer's connection is gone and PostgreSQL unreachable for a while...
        good_dsn, store.dsn = store.dsn, dsn.rsplit(":", 1)[0] + ":1/nowhere"
        assert store._conn is not None
        store._conn.terminate()
        store.append_journal("inv_a", 1, 1, b"e1", 2)
        store.commit()
        for _ in range(100):
            if not store.available:
                break
            await asyncio.sleep(0.05)
        assert not store.available
        # ...as after a COMMIT whose answer was lost: the batch is in, its seq stored
        await conn.execute(
            "INSERT INTO durably.journal VALUES (0, 'inv_a', 1, 1, 'e1', 2); "
            f"UPDATE durably.writer SET seq = {seq + 1}"
        )
        store.dsn = good_dsn
        await _committed(store)  # resending would break the journal's primary key
        assert await conn.fetchval("SELECT count(*) FROM durably.journal") == 2
        assert store.available and store._failed is None
    finally:
        await conn.close()


async def test_reconnects_after_the_backends_are_terminated(
    store: PostgresStore, dsn: str
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'durably'"
        )
        store.put_invocation(row("inv_a"))
        await _committed(store)
        assert await conn.fetchval("SELECT count(*) FROM durably.invocation") == 1
    finally:
        await conn.close()


async def test_a_read_only_database_is_fatal_and_loses_nothing(
    store: PostgresStore, dsn: str, cluster: PostgresCluster
) -> None:
    fatal: list[BaseException] = []
    store.commit_gate(fatal.append)
    store.put_invocation(row("inv_a"))
    await _committed(store)
    db = dsn.rsplit("/", 1)[1]
    cluster.psql(f"ALTER DATABASE {db} SET default_transaction_read_only = on")
    try:
        cluster.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = 'durably' AND datname = '{db}'"
        )
        store.put_invocation(row("inv_b"))
        store.commit()
        for _ in range(200):
            if fatal:
                break
            await asyncio.sleep(0.05)
        assert fatal, "a refused commit must stop the store"
        line = str(fatal[0])
        assert "read-only" in line and "\n" not in line, line
    finally:
        cluster.psql(f"ALTER DATABASE {db} RESET default_transaction_read_only")
    again = await _open(dsn)
    try:
        assert [r.id for r in again.active_invocations()] == ["inv_a"]
    finally:
        await again.aclose()


async def test_migrates_once_and_refuses_a_newer_schema(dsn: str) -> None:
    first = await _open(dsn)
    await first.aclose()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT version FROM durably.schema_version") == LATEST
        await conn.execute("UPDATE durably.schema_version SET version = $1", LATEST + 1)
    finally:
        await conn.close()
    with pytest.raises(StorageError) as err:
        await _open(dsn)
    assert f"version {LATEST + 1}" in str(err.value) and "upgrade durably" in str(err.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda dsn: dsn.replace("durably-test@", "wrong@"), "authentication failed"),
        (lambda dsn: dsn.rsplit("/", 1)[0] + "/no_such_db", "does not exist"),
        (lambda dsn: dsn.replace("127.0.0.1:", "127.0.0.1:1").rsplit(":", 1)[0] + ":1/x", "cannot connect"),
    ],
    ids=["bad-password", "no-database", "unreachable"],
)
async def test_connection_errors_are_one_clear_line(
    dsn: str, change: Callable[[str], str], expected: str
) -> None:
    with pytest.raises(StorageError) as err:
        await _open(change(dsn))
    text = str(err.value)
    assert expected in text and "\n" not in text and "durably-test" not in text, text


async def test_a_node_loads_and_drops_its_partitions_only(store: PostgresStore, dsn: str) -> None:
    """Spread placement (durably.cluster.spread): a store loads the rows of the partitions
    it is given, more when it takes some over, and forgets those it hands over."""
    import os

    from durably.ids import InvocationId, partition_key_for, partition_of

    n = 64

    def key_in(pid: int) -> str:
        return next(k for k in (f"k{i}" for i in range(10_000))
                    if partition_of(partition_key_for(key=k), n) == pid)

    keys = {pid: key_in(pid) for pid in (3, 40)}  # 40: partition keys above i64's max
    ids = {
        pid: str(InvocationId(partition_key_for(key=k), os.urandom(16))) for pid, k in keys.items()
    }
    for pid, key in keys.items():
        inv = ids[pid]
        store.put_invocation(row(inv, partition_key=partition_key_for(key=key), key=key))
        store.append_journal(inv, 0, 1024, b"in", 7)
        store.set_state("Counter", key, b"n", b"%d" % pid)
        store.add_subscriber(SubscriberRow(inv, "inv_elsewhere", 1, 2))
        store.add_timer(50, "sleep", inv, 1)
    await _committed(store)

    node = PostgresStore(dsn)
    node.load_only = (n, {3})
    await node.open()
    try:
        assert [r.id for r in node.active_invocations()] == [ids[3]]
        assert node.all_state("Counter", keys[40]) == []
        await node.load_partitions(n, {40})
        assert sorted(r.id for r in node.active_invocations()) == sorted(ids.values())
        assert node.load_journal(ids[40]) == [(1024, b"in")]
        assert node.all_state("Counter", keys[40]) == [(b"n", b"40")]
        assert {t.invocation_id for t in node.all_timers()} == set(ids.values())
        node.drop_partitions(n, {3})
        assert [r.id for r in node.active_invocations()] == [ids[40]]
        assert node.load_journal(ids[3]) == []
        assert node.all_state("Counter", keys[3]) == []
        assert node.children_of("inv_elsewhere", 2) == [ids[40]]
        assert [t.invocation_id for t in node.all_timers()] == [ids[40]]
        assert node.load_only == (n, {40})
    finally:
        await node.aclose()
