"""The invocation list's fast path (indexed UI status, page shapes, counts the store keeps)
gives the same rows, order and totals as the plain SQL it replaces, on a SQLite store with
invocations of every status, kind of caller, deployment and outcome; and a store of an older
schema gets the indexes and counts when it is opened."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.datastructures import QueryParams

from durably.engine.model import CANCELED, KILLED, Failure, Result
from durably.storage.base import InvocationRow
from durably.storage.introspection import UI_STATUS, UI_STATUSES, Introspector
from durably.storage.sqlite import SqliteStore
from durably.ui.filters import STATUS_FILTERS, ListView

T0 = 1_764_000_000_000
_RESULTS = {
    "succeeded": Result(value=b'"ok"'),
    "failed": Result(failure=Failure(500, "it's broken")),
    "cancelled": Result(failure=CANCELED),
    "killed": Result(failure=KILLED),
    "cancelled (SDK)": Result(failure=Failure(409, "cancelled")),
    "conflict": Result(failure=Failure(409, "the workflow method was already invoked")),
}
_RAW = ["inboxed", "scheduled", "invoked", "suspended", "backing-off", "paused", "completed"]


def _rows(n: int) -> Iterator[InvocationRow]:
    rnd = random.Random(13)
    for i in range(n):
        status = rnd.choice(_RAW)
        service, handler, key = rnd.choice(
            [("Greeter", "greet", None), ("Cart", "add", "alice"), ("Cart", "add", "bob"),
             ("Cart", "items", "bob"), ("Signup", "run", "ada")])
        started = status not in ("inboxed", "scheduled")
        # created times collide in groups of three: paging must break ties by id
        created = T0 + (i // 3) * 1000
        called = i % 4 == 0
        yield InvocationRow(
            id=f"inv_{i:05d}{rnd.getrandbits(32):08x}", partition_key=rnd.getrandbits(63),
            service=service, handler=handler, key=key,
            service_ty="service" if key is None else "virtual_object",
            handler_ty=None if key is None else "exclusive", status=status,
            created_at=created, modified_at=created + rnd.randrange(0, 50_000),
            idempotency_key=f"idem-{i % 7}" if i % 5 == 0 else None,
            deployment_id=f"dp_{i % 3}", protocol_version=5 if started else None,
            invoked_by="service" if called else ("subscription" if i % 9 == 1 else "ingress"),
            invoked_by_id=f"inv_parent{i % 4}" if called else ("sub_1" if i % 9 == 1 else None),
            result=(rnd.choice(list(_RESULTS.values())).encode()
                    if status == "completed" else None),
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SqliteStore, Introspector]]:
    s = SqliteStore(tmp_path_factory.mktemp("list-fast"), synchronous="OFF")
    for row in _rows(900):
        s.put_invocation(row)
    s.commit()
    introspector = Introspector(str(s.path))
    yield s, introspector
    introspector.close()
    s.close()


VIEWS = [
    "", "order=asc", "sort=modified_at", "sort=modified_at&order=asc", "limit=20",
    *[f"status={s}" for s in STATUS_FILTERS],
    *[f"status={s}&sort=modified_at" for s in ("in-flight", "completed", "failed")],
    "status=running&status=killed", "status=completed&status=succeeded",
    "service=Cart", "service=Cart&status=completed", "handler=add", "handler=add&service=Cart",
    "key=bob", "key=bob&service=Cart&status=not-completed", "invoked_by=inv_parent2",
    "invoked_by=sub_1", "deployment=dp_1", "deployment=dp_1&status=in-flight",
    "idempotency_key=idem-3", "created_after=2025-11-24T16:02&created_before=2025-11-24T16:05",
    "created_after=2025-11-24T16:02&status=cancelled&sort=modified_at",
    "service=Greeter&where=journal_size%20%3E%3D%200",
]


def _walk(introspector: Introspector, qs: str, *, fast: bool, total: int | None) -> list[str]:
    """Every row of the view, page by page (keyset), forwards."""
    view = ListView.from_query(QueryParams(qs + "&limit=20"))
    ids: list[str] = []
    for _ in range(100):
        result = introspector.query(view.page_sql(fast=fast, total=total))
        rows = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
        ids += [r["id"] for r in rows[: view.limit]]
        if len(rows) <= view.limit:
            return ids
        last = rows[view.limit - 1]
        view = dataclasses.replace(view, after=f"{last[view.sort]}|{last['id']}")
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("qs", VIEWS)
def test_fast_path_gives_the_same_rows(store: tuple[SqliteStore, Introspector], qs: str) -> None:
    _, introspector = store
    view = ListView.from_query(QueryParams(qs))
    assert not view.errors
    (slow_total,), = introspector.query(view.count_sql(fast=False)).rows
    (fast_total,), = introspector.query(view.count_sql()).rows
    assert fast_total == slow_total
    plain = _walk(introspector, qs, fast=False, total=None)
    assert len(plain) == slow_total
    # the index shapes (small total) and the walk of the sort index (large total)
    assert _walk(introspector, qs, fast=True, total=None) == plain
    assert _walk(introspector, qs, fast=True, total=10**9) == plain


def test_paging_backwards_returns_the_same_page(store: tuple[SqliteStore, Introspector]) -> None:
    _, introspector = store
    for qs in ("status=completed", "service=Cart&sort=modified_at", "status=in-flight&order=asc"):
        view = ListView.from_query(QueryParams(qs + "&limit=20"))
        first = introspector.query(view.page_sql()).rows
        cols = introspector.query(view.page_sql()).columns
        row = dict(zip(cols, first[19], strict=True))
        nxt = dataclasses.replace(view, after=f"{row[view.sort]}|{row['id']}")
        second = [dict(zip(cols, r, strict=True)) for r in introspector.query(nxt.page_sql()).rows]
        top = second[0]
        back = dataclasses.replace(view, before=f"{top[view.sort]}|{top['id']}")
        again = [r[0] for r in introspector.query(back.page_sql()).rows][:20]
        assert list(reversed(again)) == [r[0] for r in first[:20]], qs


def _group_by(introspector: Introspector) -> list[tuple[str, str, str, str, int]]:
    result = introspector.query(
        "SELECT target_service_name, target_handler_name, "
        f"coalesce(pinned_deployment_id, ''), {UI_STATUS}, count(*) "
        "FROM sys_invocation GROUP BY 1, 2, 3, 4")
    return sorted((str(s), str(h), str(d), str(u), int(n)) for s, h, d, u, n in result.rows)


def _kept(introspector: Introspector) -> list[tuple[str, str, str, str, int]]:
    counts = introspector.ui_counts()
    assert counts is not None
    return sorted(counts)


def test_kept_counts_follow_every_write(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path, synchronous="OFF")
    introspector = Introspector(str(s.path))
    try:
        rows = list(_rows(300))
        for row in rows:
            s.put_invocation(row)
        s.commit()
        assert _kept(introspector) == _group_by(introspector)
        assert {u for _, _, _, u, _ in _group_by(introspector)} <= set(UI_STATUSES)
        rnd = random.Random(5)
        for row in rnd.sample(rows, 120):  # status changes, outcomes, rewrites in place
            row.status = rnd.choice(_RAW)
            if row.protocol_version is None and row.status not in ("inboxed", "scheduled"):
                row.protocol_version = 5  # an attempt pins the deployment
            row.result = (rnd.choice(list(_RESULTS.values())).encode()
                          if row.status == "completed" else None)
            s.put_invocation(row)
            s.put_invocation(row)
        for row in rnd.sample(rows, 40):
            s.delete_invocation(row.id)
        s.commit()
        # a batch rolled back leaves the counts as they were
        for row in rows[:10]:
            s.delete_invocation(row.id)
        s.rollback()
        s.put_invocation(rows[0])  # read again from the store after the rollback
        s.commit()
        counts = _kept(introspector)
        assert counts == _group_by(introspector)
        assert sum(n for *_, n in counts) == 260
        # the total of a filter on statuses, service and handler comes from them
        for qs in ("", "status=completed&status=running", "service=Cart",
                   "service=Cart&handler=add&status=not-completed", "handler=items",
                   "deployment=dp_1&status=completed", "deployment=dp_2"):
            view = ListView.from_query(QueryParams(qs))
            (n,), = introspector.query(view.count_sql(fast=False)).rows
            assert view.total_from_counts(counts) == n, qs
        for qs in ("key=bob", "service=Cart&created_after=2025-11-24T16:02", "where=1%3D1"):
            assert ListView.from_query(QueryParams(qs)).total_from_counts(counts) is None
    finally:
        introspector.close()
        s.close()


def test_an_older_store_is_migrated_when_opened(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path, synchronous="OFF")
    for row in _rows(200):
        s.put_invocation(row)
    s.close()
    # as schema version 2 left it: its status index, none of the UI's, no counts
    db = sqlite3.connect(tmp_path / "durably.sqlite3", isolation_level=None)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type IN ('index', 'table') "
                              "AND (name LIKE 'invocation\\_%\\_view' ESCAPE '\\' "
                              "OR name = 'invocation_ui_count')").fetchall():
        kind = "TABLE" if name == "invocation_ui_count" else "INDEX"
        db.execute(f"DROP {kind} {name}")
    db.execute("CREATE INDEX invocation_status_view ON invocation(status)")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.close()

    s = SqliteStore(tmp_path, synchronous="OFF")
    introspector = Introspector(str(s.path))
    try:
        assert s.load_meta("schema_version") == b"3"
        names = {r[0] for r in sqlite3.connect(s.path).execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "invocation_status_view" not in names
        assert {"invocation_ui_status_view", "invocation_service_view",
                "invocation_key_view", "invocation_modified_view"} <= names
        assert _kept(introspector) == _group_by(introspector)
        assert sum(n for *_, n in _group_by(introspector)) == 200
    finally:
        introspector.close()
        s.close()


def test_completion_failure_is_the_same_in_sql(store: tuple[SqliteStore, Introspector]) -> None:
    """sys_invocation.completion_failure is computed in SQL (indexable); it reads as the
    decoded result does."""
    _, introspector = store
    result = introspector.query(
        "SELECT completion_failure, count(*) FROM sys_invocation "
        "WHERE completion_result = 'failure' GROUP BY 1")
    assert all(isinstance(f, str) for f, _ in result.rows)  # text, as the decoder gave
    seen = {f for f, _ in result.rows}
    expected = {f"[{r.failure.code}] {r.failure.message}" for r in _RESULTS.values()
                if r.failure is not None}
    assert seen == expected
