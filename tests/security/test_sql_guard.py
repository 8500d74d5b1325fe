"""The SQL guard of `POST /query` against generated queries (hypothesis): comments, quoting,
schema prefixes, CTEs named like the views, subqueries and unions, aimed at durably's own
tables holding sentinel rows. No answer may carry a sentinel.

Sentinels sit in every column no view reads (every column of meta, timer, subscriber, ...;
the columns of invocation the views leave out): what a view shows is public by design, the
rest must stay unreachable even for a caller who learned the store's secret schema name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durably.storage.introspection import TABLES, Introspector, QueryError, QueryRefused
from durably.storage.sqlite import SqliteStore

SENTINEL = "SENTINEL"
SENTINEL_INT = 987_654_321_987
# viewed columns the views decode: a value they can decode (an empty input command)
PLAUSIBLE = {
    ("journal", "entry_type"): 1024,
    ("journal", "body"): b"",
    ("promise", "result"): b"V1",  # a completed promise whose value is 1
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Introspector, list[str]]]:
    data = tmp_path_factory.mktemp("guard")
    created = SqliteStore(data)
    path = Path(created.path)
    created.close()
    introspector = Introspector(str(path))
    viewed = introspector._take().allowed  # (view, table, column) reads the views make
    viewed_columns = {(table, column) for _, table, column in viewed}
    db = sqlite3.connect(path)
    tables = [
        t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not t.startswith("sqlite_")
    ]
    for table in tables:
        cols = list(db.execute(f'PRAGMA table_info("{table}")'))
        values = []
        for _, name, ty, notnull, _, pk in cols:
            if (table, name) in PLAUSIBLE:
                values.append(PLAUSIBLE[table, name])
            elif (table, name) in viewed_columns:
                # shown by a view: any value is public; NULL keeps the views' decoders quiet
                required = pk or notnull
                values.append(
                    None if not required else 1 if "INT" in ty else b"p" if ty == "BLOB" else "p"
                )
            elif "INT" in ty:
                values.append(SENTINEL_INT)
            else:
                values.append(f"{SENTINEL}_{table}_{name}")
        db.execute(f'INSERT INTO "{table}" VALUES ({", ".join("?" for _ in values)})', values)
    db.commit()
    db.close()
    yield introspector, tables
    introspector.close()


def secret_schema(introspector: Introspector) -> str:
    """The schema name the next query's connection attached the store under (an attacker
    has no way to read it; the test hands it over to show it would not help)."""
    introspector.query("SELECT 1")
    return introspector._idle[-1].schema


COMMENTS = ["", " ", "/**/", "/* x */", "--c\n", "\n", "\t"]
VIEW_NAMES = list(TABLES)


@st.composite
def identifier(draw: st.DrawFn, name: str) -> str:
    style = draw(st.sampled_from(["bare", "double", "bracket", "backtick", "upper"]))
    return {
        "bare": name,
        "double": f'"{name}"',
        "bracket": f"[{name}]",
        "backtick": f"`{name}`",
        "upper": name.upper(),
    }[style]


@st.composite
def table_ref(draw: st.DrawFn, tables: list[str], secret: str) -> str:
    table = draw(st.sampled_from(tables + ["sqlite_master", "sqlite_temp_master"]))
    schema = draw(st.sampled_from([None, "main", "temp", secret]))
    ref = draw(identifier(table))
    if schema is None:
        return ref
    c1, c2 = draw(st.sampled_from(COMMENTS)), draw(st.sampled_from(COMMENTS))
    return f"{draw(identifier(schema))}{c1}.{c2}{ref}"


# where a reference to an internal table can hide in a query
SHAPES = [
    "SELECT{c}*{c}FROM{c}{ref}",
    "SELECT count(*) AS n FROM {ref}",
    "WITH {cte}{c}AS{c}(SELECT * FROM {ref}) SELECT * FROM {cte}",
    "WITH {cte} AS MATERIALIZED (SELECT * FROM {ref}) SELECT * FROM {cte}",
    "SELECT * FROM (SELECT * FROM {ref}) AS {cte}",
    "SELECT id FROM sys_invocation UNION ALL SELECT * FROM {ref}",
    "SELECT (SELECT group_concat(quote(rowid)) FROM {ref}) AS v",
    "WITH RECURSIVE {cte}(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM {cte} WHERE n < 2) "
    "SELECT * FROM {cte}, {ref}",
    "SELECT * FROM sys_journal j JOIN {ref} t ON 1 = 1",
    "SELECT * FROM sys_invocation WHERE id IN (SELECT * FROM {ref})",
]


@st.composite
def hostile_query(draw: st.DrawFn, tables: list[str], secret: str) -> str:
    ref = draw(table_ref(tables, secret))
    c = draw(st.sampled_from(COMMENTS))
    cte = draw(identifier(draw(st.sampled_from(VIEW_NAMES + ["x", "meta", "main"]))))
    template = draw(st.sampled_from(SHAPES))
    return template.format(ref=ref, c=c, cte=cte)


# stands for the store's schema name, filled in just before a query runs (each connection
# has its own)
SECRET = "SECRET_SCHEMA"


def _leaks(introspector: Introspector, sql: str) -> str | None:
    sql = sql.replace(SECRET, secret_schema(introspector))
    try:
        result = introspector.query(sql)
    except (QueryRefused, QueryError):
        return None
    text = repr(result.rows)
    if SENTINEL in text or str(SENTINEL_INT) in text:
        return text[:500]
    return None


def test_generated_queries_never_reach_internal_rows(
    store: tuple[Introspector, list[str]],
) -> None:
    introspector, tables = store

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(hostile_query(tables, SECRET))
    def check(sql: str) -> None:
        leak = _leaks(introspector, sql)
        assert leak is None, f"{sql!r} answered {leak}"

    check()


def test_the_secret_name_alone_opens_nothing(store: tuple[Introspector, list[str]]) -> None:
    introspector, tables = store
    secret = SECRET
    for table in tables:
        for sql in (
            f"SELECT * FROM {secret}.{table}",
            f"SELECT count(*) FROM {secret}.{table}",
            f"WITH sys_inbox AS (SELECT * FROM {secret}.{table}) SELECT * FROM sys_inbox",
            f"WITH sys_journal AS (SELECT * FROM {secret}.{table}) SELECT * FROM sys_journal",
        ):
            assert _leaks(introspector, sql) is None, sql
    with pytest.raises(QueryRefused):
        introspector.query(f"SELECT * FROM {secret_schema(introspector)}.meta")


def test_the_views_still_answer(store: tuple[Introspector, list[str]]) -> None:
    introspector, _ = store
    for view in TABLES:
        introspector.query(f"SELECT * FROM {view}")
        introspector.query(f"SELECT count(*) FROM {view}")
