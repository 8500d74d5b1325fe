"""How fast the web UI's invocation list answers with a million retained invocations.

    python -m bench.ui_page --rows 1000000 [--data-dir DIR]
    python -m bench.ui_page --rows 100000 --store postgresql://USER:PASSWORD@HOST:PORT/DB

Generates the rows straight into a SQLite store (same schema as `durably serve`: the store
creates it), or into a PostgreSQL database (migrated as `durably serve` would), then times the UI's list page (through the ASGI app, as a browser would get it):
the default view, a status filter, a service filter, the next page (keyset) and the
overview. Prints a table: per view the median and worst wall time of several runs, and the
median CPU time the process spent (which a loaded machine does not inflate).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from durably.ids import InvocationId

_STATUSES = ["completed"] * 90 + ["suspended"] * 4 + ["invoked"] * 2 + ["backing-off"] * 2 + [
    "paused",
    "scheduled",
]
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
    db.execute("COMMIT")
    db.close()
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
        done = status == "completed"
        batch.append((
            str(iid), iid.partition_key >> 1, service, handler, k, ty,
            None if ty == "service" else "exclusive", status, created, created + 5,
            "ingress", created + 5 if done else None, b"V\"ok\"" if done else None,
            created + 86_400_000 if done else None, 2, created + 1,
        ))
        if len(batch) == 50_000:
            yield batch
            batch = []
    if batch:
        yield batch


_INSERT = (
    "INSERT INTO invocation (id, partition_key, service, handler, key, service_ty, handler_ty, "
    "status, created_at, modified_at, invoked_by, completed_at, result, expires_at, "
    "journal_length, running_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
    db_path: Path | None, runs: int, dsn: str | None = None
) -> list[tuple[str, float, float, float]]:
    import httpx

    app, introspector = _ui_app(db_path, dsn)
    transport = httpx.ASGITransport(app=app)
    out = []
    async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
        first = await client.get("/ui/invocations")
        cursor = first.text.split('rel="next" href="invocations?', 1)[1].split('"', 1)[0]
        views = [
            ("overview", "/ui/"),
            ("list, newest first (default)", "/ui/invocations"),
            ("list, next page (keyset)", "/ui/invocations?" + cursor.replace("&amp;", "&")),
            ("list, oldest first", "/ui/invocations?order=asc"),
            ("list, status=suspended", "/ui/invocations?status=suspended"),
            ("list, status=running + backing-off", "/ui/invocations?status=in-flight"),
            ("list, status=completed", "/ui/invocations?status=completed"),
            ("list, service=Greeter", "/ui/invocations?service=Greeter"),
            ("list, key=k7 (Counter)", "/ui/invocations?service=Counter&key=k7"),
            ("list, outcome=succeeded", "/ui/invocations?status=succeeded"),
        ]
        for name, url in views:
            times, cpu = [], []
            for _ in range(runs):
                t0, c0 = time.perf_counter(), time.process_time()
                r = await client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                # CPU time of the whole process (the query runs in a worker thread): what the
                # page costs, whatever else the machine is doing
                cpu.append((time.process_time() - c0) * 1000)
                assert r.status_code == 200, (url, r.status_code, r.text[:300])
            out.append((name, statistics.median(times), max(times),
                        statistics.median(cpu)))
            _print_row(*out[-1])
    for name, sql in QUERIES:
        times, cpu = [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.to_thread(introspector.query, sql)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        out.append((name, statistics.median(times), max(times), statistics.median(cpu)))
        _print_row(*out[-1])
    introspector.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--store", default=None,
                        help="a postgresql:// DSN: generate into and query that database")
    args = parser.parse_args()
    if args.store:
        t0 = time.perf_counter()
        have = asyncio.run(generate_postgres(args.store, args.rows))
        print(f"store: PostgreSQL ({have:,} invocations; ready in "
              f"{time.perf_counter() - t0:.1f} s)")
        print("| view | median ms | max ms | CPU ms (median) |\n|---|---:|---:|---:|")
        asyncio.run(measure(None, args.runs, args.store))
        return
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="durably-ui-bench-"))
    t0 = time.perf_counter()
    db_path = generate(data_dir, args.rows)
    print(f"store: {db_path} ({args.rows:,} invocations, "
          f"{os.path.getsize(db_path) / 1e6:.0f} MB; ready in {time.perf_counter() - t0:.1f} s)")
    print("| view | median ms | max ms | CPU ms (median) |\n|---|---:|---:|---:|")
    asyncio.run(measure(db_path, args.runs))


def _print_row(name: str, median: float, worst: float, cpu: float) -> None:
    # as each view is measured, so a long run shows its progress
    print(f"| {name} | {median:.1f} | {worst:.1f} | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
