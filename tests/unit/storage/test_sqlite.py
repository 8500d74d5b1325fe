"""The SQLite backend: every table method, u64 keys, bad data dirs, commit visibility."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from durably.storage.base import InvocationRow, SubscriberRow, TimerRow
from durably.storage.sqlite import SqliteStore, StorageError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "data")
    try:
        yield s
    finally:
        s.close()


def row(inv_id: str = "inv_1", **changes: object) -> InvocationRow:
    base = InvocationRow(
        id=inv_id,
        partition_key=12345,
        service="Counter",
        handler="add",
        key="alice",
        service_ty="virtual_object",
        handler_ty="exclusive",
        status="invoked",
        created_at=1000,
        modified_at=1001,
    )
    return dataclasses.replace(base, **changes)


def test_creates_the_data_dir(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    s = SqliteStore(target)
    try:
        assert (target / "durably.sqlite3").exists()
        assert s.load_meta("schema_version") == b"3"
    finally:
        s.close()


def test_meta_round_trip(store: SqliteStore) -> None:
    assert store.load_meta("registry") is None
    store.save_meta("registry", b"{}")
    store.save_meta("registry", b'{"v": 2}')
    assert store.load_meta("registry") == b'{"v": 2}'


def test_invocation_round_trip_with_every_field(store: SqliteStore) -> None:
    full = row(
        idempotency_key="ik",
        deployment_id="dp_1",
        protocol_version=6,
        invoked_by="service",
        invoked_by_id="inv_parent",
        invoked_by_target="Greeter/greet",
        execution_time=5000,
        inbox_seq=7,
        inboxed_at=1002,
        running_at=1003,
        completed_at=1004,
        retry_count=3,
        last_failure="boom",
        last_failure_code=500,
        next_retry_at=1005,
        random_seed=(1 << 63) - 1,
        journal_length=4,
        waiting='[[1],[],[]]',
        result=b"V\x00\xffbytes",
        expires_at=9999,
        extra={"idempotency_retention_ms": 10},
    )
    store.put_invocation(full)
    assert store.get_invocation("inv_1") == full
    store.commit()
    assert store.get_invocation("inv_1") == full
    assert store.get_invocation("inv_missing") is None


def test_put_replaces(store: SqliteStore) -> None:
    store.put_invocation(row(status="invoked"))
    store.put_invocation(row(status="suspended", waiting="[]"))
    got = store.get_invocation("inv_1")
    assert got is not None and got.status == "suspended" and got.extra == {}


def test_partition_key_above_2_63_round_trips(store: SqliteStore) -> None:
    for i, pk in enumerate([0, (1 << 63) - 1, 1 << 63, (1 << 63) + 12345, (1 << 64) - 1]):
        store.put_invocation(row(f"inv_{i}", partition_key=pk))
        store.commit()
        got = store.get_invocation(f"inv_{i}")
        assert got is not None and got.partition_key == pk
    assert {r.partition_key for r in store.active_invocations()} == {
        0,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + 12345,
        (1 << 64) - 1,
    }


def test_active_and_expired_invocations(store: SqliteStore) -> None:
    store.put_invocation(row("inv_a", created_at=3))
    store.put_invocation(row("inv_b", created_at=1, status="inboxed", inbox_seq=1))
    store.put_invocation(row("inv_c", created_at=2, status="completed", expires_at=100))
    store.put_invocation(row("inv_d", created_at=4, status="completed", expires_at=500))
    assert [r.id for r in store.active_invocations()] == ["inv_b", "inv_a"]
    assert [r.id for r in store.expired_invocations(100, 10)] == ["inv_c"]
    assert sorted(r.id for r in store.expired_invocations(1000, 10)) == ["inv_c", "inv_d"]
    assert len(store.expired_invocations(1000, 1)) == 1
    assert store.expired_invocations(99, 10) == []


def test_delete_invocation_removes_its_journal(store: SqliteStore) -> None:
    store.put_invocation(row("inv_a"))
    store.append_journal("inv_a", 0, 0x0400, b"in", 1)
    store.append_journal("inv_b", 0, 0x0400, b"other", 1)
    store.delete_invocation("inv_a")
    assert store.get_invocation("inv_a") is None
    assert store.load_journal("inv_a") == []
    assert store.load_journal("inv_b") == [(0x0400, b"other")]


def test_journal_round_trip_in_index_order(store: SqliteStore) -> None:
    store.append_journal("inv_a", 1, 0x0403, b"\x01", 10)
    store.append_journal("inv_a", 0, 0x0400, b"", 10)
    store.append_journal("inv_a", 2, 0xFBFF, b"\x00\xff", 11)
    assert store.load_journal("inv_a") == [(0x0400, b""), (0x0403, b"\x01"), (0xFBFF, b"\x00\xff")]
    store.append_journal("inv_a", 1, 0x0404, b"replaced", 12)
    assert store.load_journal("inv_a")[1] == (0x0404, b"replaced")
    store.delete_journal("inv_a")
    assert store.load_journal("inv_a") == []


def test_state_round_trip(store: SqliteStore) -> None:
    assert store.get_state("Counter", "alice", b"n") is None
    store.set_state("Counter", "alice", b"n", b"1")
    store.set_state("Counter", "alice", b"\x00bin", b"\xff")
    store.set_state("Counter", "bob", b"n", b"2")
    store.set_state("Other", "alice", b"n", b"3")
    store.set_state("Counter", "alice", b"n", b"4")
    assert store.get_state("Counter", "alice", b"n") == b"4"
    assert store.all_state("Counter", "alice") == [(b"\x00bin", b"\xff"), (b"n", b"4")]
    store.clear_state("Counter", "alice", b"n")
    assert store.all_state("Counter", "alice") == [(b"\x00bin", b"\xff")]
    store.clear_all_state("Counter", "alice")
    assert store.all_state("Counter", "alice") == []
    assert store.get_state("Counter", "bob", b"n") == b"2"
    assert store.get_state("Other", "alice", b"n") == b"3"


def test_promises_and_listeners(store: SqliteStore) -> None:
    assert store.get_promise("Wf", "w1", "p") is None
    store.add_promise_listener("Wf", "w1", "p", "inv_a", 1)
    store.add_promise_listener("Wf", "w1", "p", "inv_a", 1)  # idempotent
    store.add_promise_listener("Wf", "w1", "p", "inv_b", 3)
    store.add_promise_listener("Wf", "w1", "q", "inv_c", 1)
    store.set_promise("Wf", "w1", "p", b"Vv")
    store.set_promise("Wf", "w2", "p", b"Vother")
    assert store.get_promise("Wf", "w1", "p") == b"Vv"
    assert sorted(store.take_promise_listeners("Wf", "w1", "p")) == [("inv_a", 1), ("inv_b", 3)]
    assert store.take_promise_listeners("Wf", "w1", "p") == []
    store.clear_promises("Wf", "w1")
    assert store.get_promise("Wf", "w1", "p") is None
    assert store.take_promise_listeners("Wf", "w1", "q") == []
    assert store.get_promise("Wf", "w2", "p") == b"Vother"


def test_subscribers(store: SqliteStore) -> None:
    store.add_subscriber(SubscriberRow("inv_child", "inv_parent", 2, 0x800D))
    store.add_subscriber(SubscriberRow("inv_child", "inv_other", 5, 0x8012))
    store.add_subscriber(SubscriberRow("inv_child2", "inv_parent", 4, 0x800D))
    store.add_subscriber(SubscriberRow("inv_child3", "inv_parent", 6, 0x8012))
    assert sorted(store.children_of("inv_parent", 0x800D)) == ["inv_child", "inv_child2"]
    subs = store.take_subscribers("inv_child")
    assert sorted(subs, key=lambda s: s.subscriber_id) == [
        SubscriberRow("inv_child", "inv_other", 5, 0x8012),
        SubscriberRow("inv_child", "inv_parent", 2, 0x800D),
    ]
    assert store.take_subscribers("inv_child") == []
    assert store.children_of("inv_parent", 0x800D) == ["inv_child2"]


def test_subscribers_across_commits_rollbacks_and_reopening(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    assert store.take_subscribers("inv_a") == []  # loads what is stored: nothing
    store.add_subscriber(SubscriberRow("inv_a", "inv_p", 1, 0x800D))
    store.commit()
    store.add_subscriber(SubscriberRow("inv_b", "inv_p", 2, 0x800D))
    store.rollback()
    assert store.take_subscribers("inv_b") == []
    store.add_subscriber(SubscriberRow("inv_c", "inv_p", 3, 0x800D))
    store.commit()
    # taken, then rolled back: still there
    assert [s.completion_id for s in store.take_subscribers("inv_c")] == [3]
    store.rollback()
    assert [s.completion_id for s in store.take_subscribers("inv_c")] == [3]
    store.commit()
    store.close()
    # rows written before a restart are found by a fresh store
    reopened = SqliteStore(tmp_path)
    try:
        assert [s.completion_id for s in reopened.take_subscribers("inv_a")] == [1]
        assert reopened.take_subscribers("inv_a") == []
        assert reopened.take_subscribers("inv_c") == []
    finally:
        reopened.close()


def test_timers(store: SqliteStore) -> None:
    t1 = store.add_timer(300, "sleep", "inv_a", 1)
    t2 = store.add_timer(100, "invoke", "inv_b", 0)
    t3 = store.add_timer(200, "sleep", "inv_a", 2)
    assert len({t1, t2, t3}) == 3
    assert store.all_timers() == [
        TimerRow(t2, 100, "invoke", "inv_b", 0),
        TimerRow(t3, 200, "sleep", "inv_a", 2),
        TimerRow(t1, 300, "sleep", "inv_a", 1),
    ]
    store.delete_timer(t2)
    assert [t.id for t in store.all_timers()] == [t3, t1]
    store.delete_timers_of("inv_a")
    assert store.all_timers() == []


def test_everything_survives_reopening(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    s.put_invocation(row(partition_key=(1 << 64) - 2))
    s.append_journal("inv_1", 0, 0x0400, b"x", 1)
    s.set_state("Counter", "alice", b"n", b"1")
    s.set_promise("Wf", "w", "p", b"V")
    tid = s.add_timer(5, "sleep", "inv_1", 1)
    s.close()
    s = SqliteStore(tmp_path)
    try:
        assert s.get_invocation("inv_1") == row(partition_key=(1 << 64) - 2)
        assert s.load_journal("inv_1") == [(0x0400, b"x")]
        assert s.get_state("Counter", "alice", b"n") == b"1"
        assert s.get_promise("Wf", "w", "p") == b"V"
        assert s.all_timers() == [TimerRow(tid, 5, "sleep", "inv_1", 1)]
    finally:
        s.close()


def test_rollback_discards_the_batch(store: SqliteStore) -> None:
    store.set_state("S", "k", b"a", b"1")
    store.commit()
    store.set_state("S", "k", b"a", b"2")
    assert store.dirty
    store.rollback()
    assert not store.dirty
    assert store.get_state("S", "k", b"a") == b"1"


def test_commit_is_visible_to_a_second_connection_only_after_commit(store: SqliteStore) -> None:
    reader = store.read_connection()
    try:
        store.put_invocation(row("inv_x"))
        store.set_state("S", "k", b"a", b"1")
        assert store.dirty
        assert reader.execute("SELECT count(*) FROM invocation").fetchone() == (0,)
        assert reader.execute("SELECT count(*) FROM state").fetchone() == (0,)
        store.commit()
        assert not store.dirty
        assert reader.execute("SELECT id FROM invocation").fetchall() == [("inv_x",)]
        assert reader.execute("SELECT value FROM state").fetchall() == [(b"1",)]
    finally:
        reader.close()


def test_read_connection_is_read_only(store: SqliteStore) -> None:
    import sqlite3

    reader = store.read_connection()
    try:
        with pytest.raises(sqlite3.OperationalError):
            reader.execute("DELETE FROM invocation")
    finally:
        reader.close()


def test_data_dir_under_a_regular_file_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError) as e:
        SqliteStore(blocker / "data")
    assert "not writable" in str(e.value)


def test_data_dir_that_is_a_file_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        SqliteStore(blocker)


def test_corrupt_database_raises_storage_error(tmp_path: Path) -> None:
    (tmp_path / "durably.sqlite3").write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(StorageError) as e:
        SqliteStore(tmp_path)
    assert "cannot open the database" in str(e.value)


def test_the_wal_starts_over_while_a_checkpoint_races_every_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each checkpoint runs while a write is open, so it never reaches the WAL's end on its
    own; the writer finishing one when the WAL is long keeps the WAL file bounded."""
    import durably.storage.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "WAL_RESTART_FRAMES", 50)
    s = SqliteStore(tmp_path / "data")
    wal = Path(f"{s.path}-wal")
    try:
        blob = bytes(range(256)) * 32  # 8 kB: a few pages per commit
        largest = 0
        for i in range(400):
            s.save_meta(f"k{i}", blob)  # the write transaction is open...
            s._checkpointer.checkpoint()  # ...while a checkpoint copies what was committed
            s.commit()
            largest = max(largest, wal.stat().st_size)
        written = 400 * len(blob)
        assert largest < written / 4, (largest, written)
        assert all(s.load_meta(f"k{i}") == blob for i in range(400))
    finally:
        s.close()
