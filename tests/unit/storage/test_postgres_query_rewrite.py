"""The PostgreSQL query path's rewrites of Restate's dialect (storage.postgres_query): pure
strings, each also run against PostgreSQL by the conformance suite on that store."""

from __future__ import annotations

import pytest

from durably.storage.postgres_query import _rewrite

CASES = [
    # a derived table without alias (DataFusion and SQLite take it; PostgreSQL 15 does not):
    # named after its inner alias when it has one (the restate CLI refers to it), else made up
    ("SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 50000) WHERE status != 'x'",
     "SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 50000) AS inv "
     "WHERE status != 'x'"),
    ("SELECT * FROM (SELECT 1)", "SELECT * FROM (SELECT 1) AS durably_derived_1"),
    ("SELECT * FROM (SELECT 1) AS x", "SELECT * FROM (SELECT 1) AS x"),
    ("SELECT * FROM (SELECT 1) x", "SELECT * FROM (SELECT 1) x"),
    ("SELECT a, (SELECT 1) FROM t", "SELECT a, (SELECT 1) FROM t"),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM u)", "SELECT * FROM t WHERE id IN (SELECT id FROM u)"),
    # Restate's information_schema
    ("SELECT column_name FROM information_schema.columns WHERE table_name = 'state'",
     "SELECT column_name FROM information_schema_columns WHERE table_name = 'state'"),
    ("SELECT 'information_schema.columns' AS s", "SELECT 'information_schema.columns' AS s"),
    # columns named like PostgreSQL's reserved words, and the words themselves
    ("SELECT topic, offset, timestamp FROM durably_kafka_parked_record ORDER BY offset DESC "
     "LIMIT 5 OFFSET 10",
     'SELECT topic, "offset", "timestamp" FROM durably_kafka_parked_record ORDER BY "offset" '
     "DESC LIMIT 5 OFFSET 10"),
    ("SELECT p.offset FROM durably_kafka_parked_record p", 'SELECT p."offset" FROM durably_kafka_parked_record p'),
    ("SELECT timestamp '2026-01-01' AS t", "SELECT timestamp '2026-01-01' AS t"),
    # trailing semicolons (the query is wrapped in a subquery)
    ("SELECT 1 AS x;  ", "SELECT 1 AS x"),
    ("SELECT 1 AS x -- why\n", "SELECT 1 AS x -- why"),
]


@pytest.mark.parametrize("sql,expected", CASES)
def test_rewrite(sql: str, expected: str) -> None:
    assert _rewrite(sql) == expected
