"""The SQL guard of `POST /query` on PostgreSQL (storage.postgres_query) against generated
queries (hypothesis), aimed at durably's own tables holding sentinel rows, at the catalogs
and at the query schema's internals: no answer may carry a sentinel.

On PostgreSQL the guard is the database's own privileges (a NOLOGIN role that may read the
views only, inside a security-definer function where it cannot change role back), so the
probes also name the schema `durably` outright, change roles with `set_config`, and run SQL
of their own through `query_to_xml`. Runs on the tests' throwaway PostgreSQL whatever
DURABLY_TEST_STORE says: it is the PostgreSQL query path's own test.
"""

from __future__ import annotations

import asyncio
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durably.storage.introspection import TABLES, QueryError, QueryRefused
from durably.storage.postgres_query import PostgresIntrospector
from durably.storage.postgres_schema import migrate

SENTINEL = "SENTINEL"
SENTINEL_INT = 987_654_321  # fits an integer column; bigint columns get it too
PLAUSIBLE: dict[tuple[str, str], Any] = {
    ("journal", "entry_type"): 1024,
    ("journal", "body"): b"",
    ("promise", "result"): b"V1",
}


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _fill(dsn: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable FROM "
            "information_schema.columns WHERE table_schema = 'durably' "
            "ORDER BY table_name, ordinal_position"
        )
        viewed = {
            (r["table_name"], r["column_name"])
            for r in await conn.fetch(
                "SELECT table_name, column_name FROM information_schema.view_column_usage "
                "WHERE view_schema = 'durably_query' AND table_schema = 'durably'"
            )
        }
        tables: dict[str, list[Any]] = {}
        for r in columns:
            table, column, ty = r["table_name"], r["column_name"], r["data_type"]
            if (table, column) in PLAUSIBLE:
                value: Any = PLAUSIBLE[table, column]
            elif (table, column) in viewed:
                # shown by a view: public by design; the least value its column takes
                required = r["is_nullable"] == "NO"
                value = None if not required else (
                    1 if "int" in ty else b"p" if ty == "bytea" else "p"
                )
            elif "int" in ty:
                value = SENTINEL_INT
            elif ty == "bytea":
                value = f"{SENTINEL}_{table}_{column}".encode()
            else:
                value = f"{SENTINEL}_{table}_{column}"
            tables.setdefault(table, []).append(value)
        for table, values in tables.items():
            marks = ", ".join(f"${i + 1}" for i in range(len(values)))
            await conn.execute(f'INSERT INTO durably."{table}" VALUES ({marks})', *values)
        return sorted(tables)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def store() -> Iterator[tuple[PostgresIntrospector, list[str], str]]:
    from tests.support.postgres import shared_cluster

    dsn = shared_cluster().new_database()
    tables = _run(_fill(dsn))
    introspector = PostgresIntrospector(types.SimpleNamespace(dsn=dsn))
    yield introspector, tables, dsn
    introspector.close()


COMMENTS = ["", " ", "/**/", "/* x */", "--c\n", "\n", "\t"]
SCHEMAS = [None, "durably", "public", "pg_catalog", "durably_query", "information_schema"]
OTHERS = ["pg_authid", "pg_class", "pg_settings", "registry_service", "registry_source",
          "pb_field", "columns"]


@st.composite
def identifier(draw: st.DrawFn, name: str) -> str:
    style = draw(st.sampled_from(["bare", "double", "upper"]))
    return {"bare": name, "double": f'"{name}"', "upper": name.upper()}[style]


@st.composite
def table_ref(draw: st.DrawFn, tables: list[str]) -> str:
    table = draw(st.sampled_from(tables + OTHERS))
    schema = draw(st.sampled_from(SCHEMAS))
    ref = draw(identifier(table))
    if schema is None:
        return ref
    c1, c2 = draw(st.sampled_from(COMMENTS)), draw(st.sampled_from(COMMENTS))
    return f"{draw(identifier(schema))}{c1}.{c2}{ref}"


SHAPES = [
    "SELECT{c}*{c}FROM{c}{ref}",
    "SELECT count(*) AS n FROM {ref}",
    "WITH {cte}{c}AS{c}(SELECT * FROM {ref}) SELECT * FROM {cte}",
    "WITH {cte} AS MATERIALIZED (SELECT * FROM {ref}) SELECT * FROM {cte}",
    "SELECT * FROM (SELECT * FROM {ref}) AS {cte}",
    "SELECT id FROM sys_invocation UNION ALL SELECT NULL FROM {ref}",
    "SELECT (SELECT string_agg(t::text, ',') FROM {ref} t) AS v",
    "SELECT * FROM sys_journal j JOIN {ref} t ON true",
    "SELECT * FROM sys_invocation WHERE id IN (SELECT t::text FROM {ref} t)",
    "SELECT query_to_xml('SELECT * FROM {quoted}', true, false, '') AS x",
    "SELECT set_config('role', session_user, true) AS r, (SELECT count(*) FROM {ref}) AS n",
    "SELECT table_to_xml('{quoted}', true, false, '') AS x",
]


@st.composite
def hostile_query(draw: st.DrawFn, tables: list[str]) -> str:
    ref = draw(table_ref(tables))
    c = draw(st.sampled_from(COMMENTS)).replace("--c\n", " ")
    cte = draw(identifier(draw(st.sampled_from([*TABLES, "x", "meta", "durably"]))))
    template = draw(st.sampled_from(SHAPES))
    return template.format(ref=ref, c=c, cte=cte, quoted=ref.replace("'", "''"))


def _leaks(introspector: PostgresIntrospector, sql: str) -> str | None:
    try:
        result = introspector.query(sql)
    except (QueryRefused, QueryError):
        return None
    text = repr(result.rows)
    if SENTINEL in text or str(SENTINEL_INT) in text:
        return text[:500]
    return None


def test_generated_queries_never_reach_internal_rows(
    store: tuple[PostgresIntrospector, list[str], str],
) -> None:
    introspector, tables, _ = store

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(hostile_query(tables))
    def check(sql: str) -> None:
        leak = _leaks(introspector, sql)
        assert leak is None, f"{sql!r} answered {leak}"

    check()


def test_every_stored_table_is_refused_by_name(
    store: tuple[PostgresIntrospector, list[str], str],
) -> None:
    introspector, tables, _ = store
    for table in tables:
        for sql in (
            f"SELECT * FROM durably.{table}",
            f"SELECT count(*) FROM durably.{table}",
            f"WITH sys_inbox AS (SELECT * FROM durably.{table}) SELECT * FROM sys_inbox",
            *([] if table in TABLES else [f"SELECT * FROM {table}"]),  # `state` is a view too
        ):
            with pytest.raises(QueryRefused, match="is not an introspection table"):
                introspector.query(sql)


def test_the_views_still_answer(store: tuple[PostgresIntrospector, list[str], str]) -> None:
    introspector, _, _ = store
    for view in TABLES:
        introspector.query(f"SELECT * FROM {view}")
        introspector.query(f"SELECT count(*) AS n FROM {view}")


def test_the_query_role_reads_the_views_only(
    store: tuple[PostgresIntrospector, list[str], str],
) -> None:
    """What the guard stands on, checked in the database: the role may not read durably's
    schema, may read the views, and `run` belongs to it."""
    import asyncpg

    _, _, dsn = store

    async def check() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            role = await conn.fetchval("SELECT left('durably_query_' || current_database(), 63)")
            owner = await conn.fetchval(
                "SELECT pg_get_userbyid(proowner) FROM pg_proc "
                "WHERE oid = 'durably_query.run(text, integer, integer, bigint)'::regprocedure")
            assert owner == role
            assert not await conn.fetchval("SELECT has_schema_privilege($1, 'durably', 'USAGE')",
                                           role)
            assert await conn.fetchval(
                "SELECT has_table_privilege($1, 'durably_query.sys_invocation', 'SELECT')", role)
            assert not await conn.fetchval(
                "SELECT has_table_privilege($1, 'durably_query.registry_service', 'SELECT')",
                role)
        finally:
            await conn.close()

    _run(check())


def test_without_createrole_queries_are_refused_with_the_fix(tmp_path: Any) -> None:
    """A server whose database user may not create roles migrates, and its queries answer
    one line saying which role to create (nothing runs with the server's own privileges)."""
    import asyncpg
    from tests.support.postgres import shared_cluster

    cluster = shared_cluster()
    user = "u_" + uuid.uuid4().hex[:10]
    database = "d_" + uuid.uuid4().hex[:12]
    cluster.psql(f"CREATE ROLE {user} LOGIN PASSWORD 'pw' NOCREATEROLE")
    cluster.psql(f"CREATE DATABASE {database} OWNER {user}")
    dsn = cluster.dsn(database, user=user, password="pw")

    async def setup() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    _run(setup())
    introspector = PostgresIntrospector(types.SimpleNamespace(dsn=dsn))
    try:
        with pytest.raises(QueryError, match=f'CREATE ROLE "durably_query_{database}" NOLOGIN'):
            introspector.query("SELECT count(*) AS n FROM sys_invocation")
        # an operator creates the role; the next query completes the set-up and runs
        cluster.psql(f"CREATE ROLE durably_query_{database} NOLOGIN")
        cluster.psql(f"GRANT durably_query_{database} TO {user}")
        assert introspector.query("SELECT count(*) AS n FROM sys_invocation").rows == [(0,)]
        with pytest.raises(QueryRefused):
            introspector.query("SELECT * FROM durably.meta")
    finally:
        introspector.close()
