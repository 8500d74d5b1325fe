"""`POST /query` on PostgreSQL: queries run by PostgreSQL itself over the `durably_query` views.

The views (`storage.postgres_introspection`, created by migration 5) are Restate's tables
rendered from the same description as SQLite's, so answers do not depend on the store. A
query:

1. is refused before it reaches the database when it is not a read (as on SQLite), and
   rewritten for PostgreSQL 15's grammar where Restate's dialect differs (a derived table
   without alias, `information_schema.columns`);
2. runs on a connection of the query pool (never one of the engine's), in one
   `REPEATABLE READ READ ONLY` transaction with a `statement_timeout`, after `SET LOCAL
   ROLE` to the database's query role and with the views' schema alone on the search path;
3. is described (its columns), explained (every relation it reads must be a view of
   `durably_query`, or what such a view reads) and run inside `durably_query.run`, a
   SECURITY DEFINER function owned by the query role: the role has no privilege on durably's
   tables, and PostgreSQL refuses a role change inside such a function;
4. comes back one JSON document per row, at most `max_rows` rows and `max_answer_bytes`,
   and is turned into the values the SQLite path gives (bytes for bytea, ...).

The pool lives on a thread of its own with its own event loop: the engine's loop neither
waits for a query nor decodes its rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import orjson

from durably.storage.introspection import (
    _WRITE_VERBS,
    TABLES,
    QueryError,
    QueryRefused,
    QueryResult,
    _first_word,
    name_derived_by_inner_alias,
    registry_rows,
)
from durably.storage.postgres_introspection import ROLE_NAME_SQL, ROLE_SETUP

__all__ = ["PostgresIntrospector"]

log = logging.getLogger("durably.query")
T = TypeVar("T")

_NOT_A_TABLE = "'{}' is not an introspection table; query one of: " + ", ".join(sorted(TABLES))
# Functions that run SQL of their own (which the plan check cannot see into) or change
# settings: refused by name in the deparsed plan, which spells every call canonically.
_DENIED_FUNCTIONS = re.compile(
    r"\b((?:query|cursor|table|schema|database)_to_xml\w*|set_config|pg_read_\w+|"
    r"pg_ls_\w+|pg_stat_file|lo_\w+|dblink\w*)\(",
    re.I,
)
# string literals, quoted identifiers and comments (left alone by the rewrites)
_TOKEN = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|"""
    r"""\binformation_schema\s*\.\s*(columns|tables)\b""",
    re.S | re.I,
)
_LEXEME = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\s+|[A-Za-z_][A-Za-z_0-9$]*|.""",
    re.S,
)
# what may follow a derived table that has no alias (so one must be added)
_AFTER_DERIVED = {
    "WHERE", "GROUP", "ORDER", "LIMIT", "OFFSET", "HAVING", "UNION", "EXCEPT", "INTERSECT",
    "JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS", "NATURAL", "WINDOW", "FETCH", ")", ";",
    ",",
}
_RESERVED_COLUMNS = {"offset", "timestamp"}
# what follows a column name (and never the OFFSET clause's count or a timestamp literal)
_AFTER_NAME = {
    "", ",", ")", ";", "FROM", "AS", "=", "<", ">", "!", "IS", "IN", "NOT", "LIKE", "ILIKE",
    "BETWEEN", "ASC", "DESC", "AND", "OR", "WHERE", "GROUP", "ORDER", "LIMIT", "HAVING", "+",
    "-", "*", "/", "|", "%", "NULLS", "UNION", ":",
}
# beyond the server's statement_timeout, how long a query waits for an answer at all
_NO_ANSWER_SLACK_S = 5.0
_REGISTRY_LOCK = 0x64757261626C7A  # the advisory lock of a registry rows refresh


def _information_schema(sql: str) -> str:
    def swap(m: re.Match[str]) -> str:
        if m.group(1):
            return f"information_schema_{m.group(1).lower()}"
        return m.group(0)

    return _TOKEN.sub(swap, sql)


def _alias_derived_tables(sql: str) -> str:
    """PostgreSQL 15 wants an alias on every derived table (`FROM (SELECT ...) AS x`);
    DataFusion, SQLite and PostgreSQL 16 do not. And two columns of Restate's tables are
    reserved words to PostgreSQL (`offset`, `timestamp`): quoted where they are names."""
    lexemes = _LEXEME.findall(sql)
    significant = [
        i for i, t in enumerate(lexemes)
        if not (t.isspace() or t.startswith("--") or t.startswith("/*"))
    ]
    inserts: dict[int, str] = {}
    opened: list[tuple[int, bool]] = []  # (lexeme index of "(", is a derived table)
    for pos, i in enumerate(significant):
        t = lexemes[i]
        if t.lower() in _RESERVED_COLUMNS:
            before = lexemes[significant[pos - 1]] if pos else ""
            after = lexemes[significant[pos + 1]].upper() if pos + 1 < len(significant) else ""
            if before == "." or after in _AFTER_NAME:
                lexemes[i] = f'"{t.lower()}"'
        if t == "(":
            before = lexemes[significant[pos - 1]].upper() if pos else ""
            after = lexemes[significant[pos + 1]].upper() if pos + 1 < len(significant) else ""
            derived = before in ("FROM", "JOIN") and after in ("SELECT", "WITH", "VALUES")
            opened.append((i, derived))
        elif t == ")" and opened:
            _, derived = opened.pop()
            if derived:
                nxt = lexemes[significant[pos + 1]].upper() if pos + 1 < len(significant) else ""
                if nxt == "" or nxt in _AFTER_DERIVED:
                    inserts[i] = f" AS durably_derived_{len(inserts) + 1}"
    return "".join(t + inserts.get(i, "") for i, t in enumerate(lexemes))


def _rewrite(sql: str) -> str:
    sql = sql.strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    # the inner alias first (Restate's CLI refers to it from outside), then a name for any
    # derived table still without one
    return _alias_derived_tables(name_derived_by_inner_alias(_information_schema(sql)))


def _relations(plan: Any) -> list[tuple[str, str]]:
    """(schema, relation) of every relation a plan (EXPLAIN's JSON) reads."""
    out: list[tuple[str, str]] = []
    stack = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "Relation Name" in node:
                out.append((str(node.get("Schema", "")), str(node["Relation Name"])))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def _name_at(sql: str, position: str | int | None) -> str | None:
    """The (qualified) name at an error's character position in the query, if any."""
    try:
        start = int(position or 0) - 1
    except ValueError:
        return None
    if start < 0 or start >= len(sql):
        return None
    m = re.match(r'[\w"$]+(?:\s*\.\s*[\w"$]+)*', sql[start:])
    return re.sub(r"\s+", "", m.group(0)).replace('"', "") if m else None


def _from_json(value: Any, type_name: str) -> Any:
    """A value of row_to_json -> what the SQLite path gives for it."""
    if value is None:
        return None
    if type_name == "bytea" and isinstance(value, str) and value.startswith("\\x"):
        return bytes.fromhex(value[2:])
    if type_name in ("json", "jsonb") and not isinstance(value, str):
        return orjson.dumps(value).decode()
    if type_name in ("float4", "float8", "numeric") and isinstance(value, str):
        return float(value)  # NaN, Infinity
    return value


class PostgresIntrospector:
    """Runs introspection queries (blocking: call it from a worker thread, like Introspector)."""

    def __init__(
        self,
        store: Any,
        *,
        max_rows: int = 100_000,
        timeout_s: float = 30.0,
        max_answer_bytes: int = 64 * 1024 * 1024,
        pool_size: int = 2,
    ) -> None:
        self.dsn: str = store.dsn
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        self.pool_size = pool_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: Any = None
        self._pool_lock: asyncio.Lock | None = None
        self._start_lock = threading.Lock()
        self._role: str | None = None  # the query role, once found set up
        self._missing_role_logged = False

    # -- the query thread --------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="durably-query", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        with self._start_lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                asyncio.run_coroutine_threadsafe(pool.close(), loop).result(timeout=10)
            except Exception:  # closing anyway; the server is stopping
                pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    async def _get_pool(self) -> Any:
        import asyncpg

        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()  # on the query thread's loop
        async with self._pool_lock:  # two first queries at once make one pool
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=0,
                    max_size=self.pool_size,
                    timeout=10,
                    statement_cache_size=0,
                    server_settings={"application_name": "durably-query"},
                )
        return self._pool

    # -- a query -----------------------------------------------------------------------

    def query(self, sql: str) -> QueryResult:
        verb = _first_word(sql)
        if verb in _WRITE_VERBS:
            raise QueryRefused(f"only SELECT queries are allowed (this statement is a {verb})")
        text = _rewrite(sql)
        try:
            return self._run(self._query(text))
        except (QueryError, QueryRefused):
            raise
        except Exception as e:
            raise self._translate(e, text) from None

    async def _query(self, sql: str) -> QueryResult:
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            try:
                # the server's statement_timeout ends a slow query; this ends a wait on a
                # connection a network cut black-holed (no answer ever comes on it)
                async with asyncio.timeout(self.timeout_s + _NO_ANSWER_SLACK_S):
                    return await self._query_on(conn, sql)
            except TimeoutError:
                conn.terminate()
                raise QueryError(
                    f"PostgreSQL did not answer within {self.timeout_s + _NO_ANSWER_SLACK_S:g}s"
                ) from None

    async def _query_on(self, conn: Any, sql: str) -> QueryResult:
        role = await self._ensure_role(conn)
        await self._refresh_registry(conn)
        try:
            await conn.execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                f"SET LOCAL statement_timeout = {max(1, int(self.timeout_s * 1000))}; "
                "SET LOCAL search_path = durably_query, pg_catalog; "
                f'SET LOCAL ROLE "{role}"'
            )
            stmt = await conn.prepare(sql)
            attributes = stmt.get_attributes()
            if not attributes:
                raise QueryRefused("only SELECT queries are allowed (this statement "
                                   "returns no rows)")
            columns = [a.name for a in attributes]
            types = [a.type.name for a in attributes]
            plan = orjson.loads(await conn.fetchval(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}"))
            for schema, relation in _relations(plan):
                if schema not in ("durably_query", "durably"):
                    raise QueryRefused(_NOT_A_TABLE.format(relation))
            denied = _DENIED_FUNCTIONS.search(orjson.dumps(plan).decode())
            if denied:
                raise QueryRefused(f"the function {denied.group(1)}() is not allowed")
            rows: list[tuple[Any, ...]] = []
            truncated = False
            size = 0
            async for record in conn.cursor(
                "SELECT durably_query.run($1, $2, $3, $4)",
                sql, len(columns), self.max_rows, self.max_answer_bytes,
                prefetch=500,
            ):
                doc = record[0]
                if doc is None:
                    truncated = True
                    break
                size += len(doc)
                if size > self.max_answer_bytes:
                    raise QueryError(self._too_big())
                values = orjson.loads(doc)
                rows.append(tuple(
                    _from_json(values.get(f"c{i + 1}"), types[i])
                    for i in range(len(columns))
                ))
            return QueryResult(columns, rows, truncated)
        except asyncio.CancelledError:
            conn.terminate()  # (a rollback would wait on a black-holed connection)
            raise
        finally:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")

    def _too_big(self) -> str:
        return (
            f"the answer exceeds the limit of {self.max_answer_bytes} bytes; select fewer "
            "rows (LIMIT) or smaller columns"
        )

    async def _ensure_role(self, conn: Any) -> str:
        """The database's query role, set up (as far as the server's role may) if needed."""
        if self._role is not None:
            return self._role
        check = (
            f"SELECT {ROLE_NAME_SQL}, EXISTS (SELECT 1 FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_roles r ON r.oid = p.proowner "
            "WHERE p.oid = 'durably_query.run(text, integer, integer, bigint)'::regprocedure "
            f"AND r.rolname = {ROLE_NAME_SQL} AND NOT r.rolsuper) "
            f"AND pg_catalog.pg_has_role(current_user, {ROLE_NAME_SQL}, 'MEMBER')"
        )
        name, ready = await conn.fetchrow(check)
        if not ready:
            await conn.execute(ROLE_SETUP)
            name, ready = await conn.fetchrow(check)
        if not ready:
            message = (
                f"POST /query on PostgreSQL needs the role {name}, which the server's "
                "database user may not create: run, as a user with CREATEROLE, "
                f'CREATE ROLE "{name}" NOLOGIN; GRANT "{name}" TO current_user-of-durably; '
                "then query again (docs/postgresql.md, SQL introspection)"
            )
            if not self._missing_role_logged:
                self._missing_role_logged = True
                log.error("%s", message)
            raise QueryError(message)
        self._role = str(name)
        return self._role

    async def _refresh_registry(self, conn: Any) -> None:
        """sys_service and sys_deployment read rows made from the stored registry document;
        they are rebuilt (by whichever node queries first) when its digest changes."""
        row = await conn.fetchrow(
            "SELECT (SELECT value FROM durably.meta WHERE key = 'schema_registry') AS value, "
            "(SELECT digest FROM durably_query.registry_source) AS installed"
        )
        raw = None if row["value"] is None else bytes(row["value"])
        digest = None if raw is None else hashlib.md5(raw).hexdigest()
        if digest == row["installed"]:
            return
        services, deployments = registry_rows(raw)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _REGISTRY_LOCK)
            installed = await conn.fetchval("SELECT digest FROM durably_query.registry_source")
            if installed == digest:
                return
            await conn.execute("DELETE FROM durably_query.registry_service")
            await conn.execute("DELETE FROM durably_query.registry_deployment")
            await conn.executemany(
                "INSERT INTO durably_query.registry_service VALUES ($1, $2, $3, $4, $5)",
                [(n, r, bool(p), ty, d) for n, r, p, ty, d in services],
            )
            await conn.executemany(
                "INSERT INTO durably_query.registry_deployment "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                deployments,
            )
            await conn.execute("UPDATE durably_query.registry_source SET digest = $1", digest)

    def _translate(self, e: Exception, sql: str) -> Exception:
        """A PostgreSQL error -> the SQLite path's refusal or error text."""
        import asyncpg

        if not isinstance(e, asyncpg.PostgresError):
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return QueryError(f"cannot read from PostgreSQL: {text}")
        state = getattr(e, "sqlstate", "")
        message = str(getattr(e, "message", "") or e)
        position = getattr(e, "position", None)
        quoted = re.search(r'"([^"]+)"', message)
        if state == "57014":
            return QueryError(f"the query ran longer than {self.timeout_s:g}s and was interrupted")
        if state == "DQ002":
            return QueryError(self._too_big())
        if state in ("54000", "53200") or "memory alloc" in message:
            return QueryError(f"a value of the query is too large: {message}")
        if state in ("42P01", "3F000"):  # undefined table, undefined schema
            name = _name_at(sql, position) or (quoted.group(1) if quoted else "?")
            return QueryRefused(_NOT_A_TABLE.format(name))
        if state == "42501":  # insufficient privilege
            if "function" in message:
                name = quoted.group(1) if quoted else message.rsplit(" ", 1)[-1]
                return QueryRefused(f"the function {name}() is not allowed")
            name = _name_at(sql, position) or message.rsplit(" ", 1)[-1]
            return QueryRefused(_NOT_A_TABLE.format(name))
        if state == "25006" or "data-modifying" in message:
            return QueryRefused(f"only SELECT queries are allowed ({message})")
        if state == "DQ001":
            return QueryError(message)
        detail = getattr(e, "hint", None)
        return QueryError(message + (f" ({detail})" if detail else ""))
