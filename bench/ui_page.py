"""How fast the web UI's invocation list answers with a million retained invocations.

    python -m bench.ui_page --rows 1000000 [--data-dir DIR]
    python -m bench.ui_page --rows 100000 --store postgresql://USER:PASSWORD@HOST:PORT/DB

Generates the rows straight into a SQLite store (same schema as `durably serve`: the store
creates it), or into a PostgreSQL database (migrated as `durably serve` would), then
times the UI's list page (through the ASGI app, as a browser would get it):
the overview, and the list under every filter (each one-click status, service, handler,
key, invoked by, deployment, idempotency key, created-time range; some combined, sorted by
last modification, and next pages by keyset). Prints a table: per view the median and worst wall time of several runs, and the
median CPU time the process spent (which a loaded machine does not inflate).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from durably.ids import InvocationId

_STATUSES = (["completed"] * 84 + ["failed"] * 3 + ["cancelled"] * 2 + ["killed"]
             + ["suspended"] * 4 + ["invoked"] * 2 + ["backing-off"] * 2
             + ["paused", "scheduled", "inboxed"])
_RESULTS = {
    "completed": b'V"ok"',
    "failed": b'F{"code":500,"message":"card declined","metadata":[]}',
    "cancelled": b'F{"code":409,"message":"canceled","metadata":[]}',
    "killed": b'F{"code":409,"message":"killed","metadata":[]}',
}
_SERVICES = [("Greeter", "greet", None, "service"), ("Counter", "add", "k", "virtual_object"),
             ("Checkout", "run", "w", "workflow"), ("Payments", "charge", None, "service")]


def generate(data_dir: Path, rows: int) -> Path:
    from durably.storage.sqlite import SqliteStore

    store = SqliteStore(data_dir, synchronous="OFF")
    path = Path(store.path)
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    (have,) = db.execute("SELECT count(*) FROM invocation").fetchone()
    if have >= rows:
        db.close()
        return path
    db.execute("BEGIN")
    for batch in _batches(have, rows):
        db.executemany(_INSERT, batch)
    # rows written around the store: it counts them again when it is opened next
    db.execute("DROP TABLE IF EXISTS invocation_ui_count")
    db.execute("COMMIT")
    db.close()
    SqliteStore(data_dir, synchronous="OFF").close()
    return path


def _batches(have: int, rows: int) -> Iterator[list[tuple[object, ...]]]:
    """Rows have..rows of the invocation table (the same on every run), 50,000 at a time."""
    rnd = random.Random(7)
    for _ in range(have):  # the same ids as a run that generated them all at once
        rnd.choice(_STATUSES), rnd.getrandbits(64), rnd.getrandbits(128)
    t0 = 1_760_000_000_000
    batch: list[tuple[object, ...]] = []
    for n in range(have, rows):
        service, handler, key, ty = _SERVICES[n % len(_SERVICES)]
        k = None if key is None else f"{key}{n % 1000}"
        status = rnd.choice(_STATUSES)
        iid = InvocationId(rnd.getrandbits(64), rnd.getrandbits(128).to_bytes(16, "big"))
        created = t0 + n * 10
        result = _RESULTS.get(status)
        done = result is not None
        started = status not in ("inboxed", "scheduled")
        # a fifth are calls from another invocation (200 children each), a tenth carry an
        # idempotency key, two deployments share the rest
        called = n % 5 == 0
        batch.append((
            str(iid), iid.partition_key >> 1, service, handler, k, ty,
            None if ty == "service" else "exclusive", "completed" if done else status,
            created, created + 5 + (n % 7) * 1000,
            "service" if called else "ingress", f"inv_parent{n % 5000}" if called else None,
            f"idem-{n}" if n % 10 == 3 else None,
            f"dp_{'ab'[n % 2]}", 5 if started else None,
            created + 5 if done else None, result,
            created + 86_400_000 if done else None, 2, created + 1,
        ))
        if len(batch) == 50_000:
            yield batch
            batch = []
    if batch:
        yield batch


_INSERT = (
    "INSERT INTO invocation (id, partition_key, service, handler, key, service_ty, handler_ty, "
    "status, created_at, modified_at, invoked_by, invoked_by_id, idempotency_key, "
    "deployment_id, protocol_version, completed_at, result, expires_at, journal_length, "
    "running_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


async def generate_postgres(dsn: str, rows: int) -> int:
    """The same rows in a PostgreSQL database (COPY); returns how many it holds."""
    import asyncpg

    from durably.storage.postgres_schema import migrate

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        have = await conn.fetchval("SELECT count(*) FROM durably.invocation")
        if have >= rows:
            return int(have)
        columns = [c.strip() for c in _INSERT.split("(", 1)[1].split(")", 1)[0].split(",")]
        for batch in _batches(have, rows):
            await conn.copy_records_to_table(
                "invocation", schema_name="durably", records=batch, columns=columns)
        # as autovacuum would have by then: statistics, and the visibility map that lets
        # counts by status be index-only scans
        await conn.execute("VACUUM ANALYZE durably.invocation")
        return rows
    finally:
        await conn.close()


def _ui_app(db_path: Path | None, dsn: str | None):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from starlette.applications import Starlette

    from durably.schema.registry import SchemaRegistry
    from durably.storage.introspection import Introspector
    from durably.ui import ui_routes

    registry = SchemaRegistry(lambda: None, lambda doc: None)
    introspector: Introspector
    if dsn is not None:
        from durably.storage.postgres_query import PostgresIntrospector

        introspector = PostgresIntrospector(SimpleNamespace(dsn=dsn))  # type: ignore[assignment]
    else:
        introspector = Introspector(str(db_path))
    # the list and overview pages read only SQL and the registry (no engine needed)
    return Starlette(routes=ui_routes(None, registry, introspector)), introspector  # type: ignore[arg-type]


# POST /query's own examples (Restate's docs), timed through the introspector
QUERIES = [
    ("query: SELECT id, status ... WHERE status = 'running'",
     "SELECT id, status FROM sys_invocation WHERE status = 'running'"),
    ("query: count(*) GROUP BY status",
     "SELECT status, count(*) AS n FROM sys_invocation GROUP BY status"),
    ("query: LIKE, ORDER BY, LIMIT 20",
     "SELECT id, target FROM sys_invocation WHERE target LIKE 'Counter/k7%' "
     "ORDER BY created_at DESC LIMIT 20"),
]


async def measure(
    db_path: Path | None, runs: int, dsn: str | None = None, only: list[str] | None = None
) -> list[tuple[str, str, float, float, float]]:
    import httpx

    from durably.ui.filters import QUICK_STATUSES

    app, introspector = _ui_app(db_path, dsn)
    transport = httpx.ASGITransport(app=app)
    out = []
    async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
        first = await client.get("/ui/invocations")
        cursor = first.text.split('rel="next" href="invocations?', 1)[1].split('"', 1)[0]
        second = await client.get("/ui/invocations?status=completed")
        cursor2 = second.text.split('rel="next" href="invocations?', 1)[1].split('"', 1)[0]
        t_from = "created_after=2025-10-09T10:00&created_before=2025-10-09T12:00"
        views = [
            ("overview", "/ui/"),
            ("list, newest first (default)", "/ui/invocations"),
            ("list, next page (keyset)", "/ui/invocations?" + cursor.replace("&amp;", "&")),
            ("list, oldest first", "/ui/invocations?order=asc"),
            ("list, by last modification", "/ui/invocations?sort=modified_at"),
            *[(f"status={s}", f"/ui/invocations?status={s}") for s in QUICK_STATUSES],
            ("status=completed, next page", "/ui/invocations?" + cursor2.replace("&amp;", "&")),
            ("status=failed, by last modification",
             "/ui/invocations?status=failed&sort=modified_at"),
            ("service=Greeter", "/ui/invocations?service=Greeter"),
            ("service=Greeter, by last modification",
             "/ui/invocations?service=Greeter&sort=modified_at"),
            ("service=Greeter + status=completed",
             "/ui/invocations?service=Greeter&status=completed"),
            ("service=Payments + status=failed",
             "/ui/invocations?service=Payments&status=failed"),
            ("handler=add", "/ui/invocations?handler=add"),
            ("service=Counter + handler=add + status=in-flight",
             "/ui/invocations?service=Counter&handler=add&status=in-flight"),
            ("key=k1 (Counter)", "/ui/invocations?service=Counter&key=k1"),
            ("key=k1 (any service)", "/ui/invocations?key=k1"),
            ("invoked by inv_parent40", "/ui/invocations?invoked_by=inv_parent40"),
            ("deployment=dp_a", "/ui/invocations?deployment=dp_a"),
            ("deployment=dp_a + status=suspended",
             "/ui/invocations?deployment=dp_a&status=suspended"),
            ("idempotency key", "/ui/invocations?idempotency_key=idem-4203"),
            ("created-time range (2 h)", f"/ui/invocations?{t_from}"),
            ("created-time range, by last modification",
             f"/ui/invocations?{t_from}&sort=modified_at"),
            ("created-time range + status=killed", f"/ui/invocations?{t_from}&status=killed"),
        ]
        for name, url in views:
            if only and not any(word in name for word in only):
                continue
            times, cpu = [], []
            for _ in range(runs):
                t0, c0 = time.perf_counter(), time.process_time()
                r = await client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                # CPU time of the whole process (the query runs in a worker thread): what the
                # page costs, whatever else the machine is doing
                cpu.append((time.process_time() - c0) * 1000)
                assert r.status_code == 200, (url, r.status_code, r.text[:300])
            # the exact total the page shows (the list's; the overview's "all" count)
            found = re.search(r'id="count" role="status"><b>([\d,]+)</b>', r.text) or re.search(
                r'href="invocations">all <b>(\d+)</b>', r.text)
            matching = found.group(1).replace(",", "") if found else "?"
            out.append((name, matching, statistics.median(times), max(times),
                        statistics.median(cpu)))
            _print_row(*out[-1])
    for name, sql in QUERIES:
        times, cpu = [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.to_thread(introspector.query, sql)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        out.append((name, "", statistics.median(times), max(times), statistics.median(cpu)))
        _print_row(*out[-1])
    introspector.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--only", action="append", default=None,
                        help="measure only the views whose name contains this (repeatable)")
    parser.add_argument("--store", default=None,
                        help="a postgresql:// DSN: generate into and query that database")
    args = parser.parse_args()
    if args.store:
        t0 = time.perf_counter()
        have = asyncio.run(generate_postgres(args.store, args.rows))
        print(f"store: PostgreSQL ({have:,} invocations; ready in "
              f"{time.perf_counter() - t0:.1f} s)")
        print(HEADER)
        asyncio.run(measure(None, args.runs, args.store, args.only))
        return
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="durably-ui-bench-"))
    t0 = time.perf_counter()
    db_path = generate(data_dir, args.rows)
    print(f"store: {db_path} ({args.rows:,} invocations, "
          f"{os.path.getsize(db_path) / 1e6:.0f} MB; ready in {time.perf_counter() - t0:.1f} s)")
    print(HEADER)
    asyncio.run(measure(db_path, args.runs, None, args.only))


HEADER = "| view | matching | median ms | max ms | CPU ms (median) |\n|---|---:|---:|---:|---:|"


def _print_row(name: str, matching: str, median: float, worst: float, cpu: float) -> None:
    # as each view is measured, so a long run shows its progress
    print(f"| {name} | {matching} | {median:.1f} | {worst:.1f} | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
