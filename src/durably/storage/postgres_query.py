"""`POST /query` on PostgreSQL: Restate's `sys_*` tables over a read-only snapshot.

The SQL dialect of `POST /query` is the one `storage.introspection` gives on SQLite (views
shaped like Restate's, protobuf decoding in user functions, the query guard), and answers
must not depend on the store. So a query on PostgreSQL:

1. reads the durably tables the query can see, in one `REPEATABLE READ READ ONLY`
   transaction with a `statement_timeout`, on a connection of its own opened from the
   worker thread the admin API runs queries in (its own event loop: the engine's loop never
   decodes a row of it);
2. copies them into a scratch SQLite file (at most `max_bytes`, else a clear error);
3. answers the query there with the SQLite introspector: same views, same guard, same row
   limit and timeout.

Its cost grows with the tables the query names (only those are copied): fine for operators'
queries, not a reporting interface (docs/postgresql.md).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from durably.storage.introspection import Introspector, QueryError, QueryResult
from durably.storage.sqlite import SCHEMA

# which of durably's tables each introspection table is a view over
_SOURCES = {
    "sys_invocation": ("invocation",),
    "sys_inbox": ("invocation",),
    "sys_keyed_service_status": ("invocation",),
    "sys_journal": ("journal",),
    "state": ("state",),
    "sys_promise": ("promise", "promise_listener"),
    "durably_kafka_parked_record": ("kafka_parked",),
}
_COLUMNS = {
    "invocation": None,  # all, in the same order on both stores
    "journal": "invocation_id, idx, entry_type, body, appended_at",
    "state": "service, key, name, value",
    "promise": "service, key, name, result",
    "promise_listener": "service, key, name, invocation_id, completion_id",
    # "offset" is a reserved word in PostgreSQL; SQLite reads the quoted name alike
    "kafka_parked": 'id, subscription_id, topic, partition, "offset", key, value, timestamp, '
    "error, parked_at",
}


def tables_for(sql: str) -> list[str]:
    """durably's tables a query may read (by the introspection tables it names)."""
    words = set(re.findall(r"[a-z_]+", sql.lower()))
    wanted: list[str] = []
    for word in words:
        for view, sources in _SOURCES.items():
            if word == view or word.startswith(view):
                wanted.extend(s for s in sources if s not in wanted)
    return wanted


class PostgresIntrospector:
    """Runs introspection queries (blocking: call it from a worker thread, like Introspector)."""

    def __init__(
        self,
        store: Any,
        *,
        max_rows: int = 100_000,
        timeout_s: float = 30.0,
        max_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.dsn: str = store.dsn
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    def close(self) -> None:
        pass

    def query(self, sql: str) -> QueryResult:
        tables = tables_for(sql)
        scratch = Path(tempfile.mkdtemp(prefix="durably-query-"))
        try:
            try:
                snapshot = asyncio.run(self._read(tables))
            except QueryError:
                raise
            except Exception as e:
                text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise QueryError(f"cannot read from PostgreSQL: {text}") from None
            _write(scratch / "durably.sqlite3", snapshot)
            introspector = Introspector(
                str(scratch / "durably.sqlite3"), max_rows=self.max_rows, timeout_s=self.timeout_s
            )
            try:
                return introspector.query(sql)
            finally:
                introspector.close()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    async def _read(self, tables: list[str]) -> dict[str, list[tuple[Any, ...]]]:
        import asyncpg

        conn = await asyncpg.connect(
            self.dsn,
            timeout=10,
            statement_cache_size=0,
            server_settings={"application_name": "durably-query"},
        )
        try:
            out: dict[str, list[tuple[Any, ...]]] = {}
            size = 0
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(f"SET LOCAL statement_timeout = {int(self.timeout_s * 1000)}")
                out["meta"] = [tuple(r) for r in await conn.fetch("SELECT key, value FROM durably.meta")]
                for table in tables:
                    cols = _COLUMNS[table] or "*"
                    rows = []
                    async with conn.transaction():  # a savepoint: the cursor needs one open
                        async for r in conn.cursor(f"SELECT {cols} FROM durably.{table}", prefetch=1000):
                            row = tuple(r)
                            size += sum(len(v) if isinstance(v, (bytes, str)) else 8 for v in row)
                            if size > self.max_bytes:
                                raise QueryError(
                                    f"the tables this query reads hold more than "
                                    f"{self.max_bytes // (1024 * 1024)} MiB; narrow it to "
                                    "fewer tables"
                                )
                            rows.append(row)
                    out[table] = rows
            return out
        except asyncpg.QueryCanceledError:
            raise QueryError(
                f"the query ran longer than {self.timeout_s:g}s and was interrupted"
            ) from None
        finally:
            await conn.close()


def _write(path: Path, snapshot: dict[str, list[tuple[Any, ...]]]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.executescript(SCHEMA)
        db.execute("BEGIN")
        for table, rows in snapshot.items():
            if not rows:
                continue
            cols = _COLUMNS.get(table) if table != "meta" else "key, value"
            names = f"({cols})" if cols else ""
            marks = ", ".join("?" for _ in rows[0])
            db.executemany(f"INSERT INTO {table} {names} VALUES ({marks})", rows)
        db.execute("COMMIT")
    finally:
        db.close()


__all__ = ["PostgresIntrospector", "tables_for"]
