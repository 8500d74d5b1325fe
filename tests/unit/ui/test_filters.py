"""The invocation list's URL <-> view <-> SQL, and the presentation helpers (pure)."""

from __future__ import annotations

from pathlib import Path

import orjson
from starlette.datastructures import QueryParams

from durably.storage.introspection import Introspector
from durably.storage.sqlite import SqliteStore
from durably.ui.filters import ListView, display_status, sql_literal
from durably.ui.present import actions_for, decode_entry, iso_duration, pretty_bytes


def test_url_round_trip() -> None:
    qs = ("status=running&status=failed&service=Cart&key=a%27b"
          "&created_after=2026-11-01T10%3A00&where=retry_count+%3E+1&sort=modified_at&order=asc"
          "&column=id&limit=100"
          "&after=2026-11-01T10%3A00%3A00.000Z%7Cinv_1")
    view = ListView.from_query(QueryParams(qs))
    assert view.query_string() == qs
    assert ListView.from_query(QueryParams(view.query_string())) == view
    assert ListView().query_string() == ""  # the defaults are left out


def test_unknown_values_fall_back_or_are_reported() -> None:
    view = ListView.from_query(QueryParams("status=bogus&sort=id;drop&limit=7&column=nope"))
    assert view.errors == ["unknown status filter 'bogus'"]
    assert view.sort == "created_at" and view.limit == 50
    assert view.columns[0] == "id"


def test_literals_are_quoted() -> None:
    assert sql_literal("it's") == "'it''s'"
    view = ListView.from_query(QueryParams("key=x' OR '1'='1"))
    assert "target_service_key = 'x'' OR ''1''=''1'" in view.condition()


def test_keyset_conditions_follow_the_order() -> None:
    view = ListView.from_query(QueryParams("after=T%7Cinv_9"))
    sql = view.page_sql()
    # the first term bounds a range of the sort index; the second breaks ties by id
    assert "created_at <= 'T' AND (created_at < 'T' OR id < 'inv_9')" in sql
    assert sql.endswith("ORDER BY created_at DESC, id DESC LIMIT 51")
    back = ListView.from_query(QueryParams("before=T%7Cinv_9"))
    assert "created_at > 'T'" in back.page_sql() and "ASC" in back.page_sql()
    assert back.backwards


def test_display_status() -> None:
    assert display_status("running", None, None) == "running"
    assert display_status("completed", "success", None) == "succeeded"
    assert display_status("completed", "failure", "[409] killed") == "killed"
    assert display_status("completed", "failure", "[409] cancelled") == "cancelled"
    assert display_status("completed", "failure", "[500] boom") == "failed"


def test_actions_as_restate_offers_them() -> None:
    assert actions_for("paused", journal_kept=True) == ["resume", "cancel", "kill"]
    assert actions_for("backing-off", journal_kept=True) == ["retry-now", "pause", "cancel",
                                                            "kill"]
    assert actions_for("suspended", journal_kept=True) == ["cancel", "kill"]
    assert actions_for("succeeded", journal_kept=True) == ["restart-as-new", "purge"]
    assert actions_for("failed", journal_kept=False) == ["purge"]
    assert actions_for("killed", journal_kept=True, workflow=True) == ["purge"]


def test_pretty_bytes_and_durations() -> None:
    assert pretty_bytes(b'{"a":1}') == ('{\n  "a": 1\n}', True)
    assert pretty_bytes(b"plain") == ("plain", False)
    assert pretty_bytes(b"\xff\x00") == ("0xff00", False)
    assert iso_duration("PT86400S") == "1 d"
    assert iso_duration("PT1.5S") == "1.50 s"


def test_decode_input_entry() -> None:
    import base64

    body = base64.b64encode(b'{"name":"<x>"}').decode()
    row = {"index": 0, "entry_type": "Command: Input", "name": "",
           "entry_json": orjson.dumps({"Command": {"Input": {
               "headers": [{"key": "x-a", "value": "1"}], "value": {"content": body}}}}).decode(),
           "appended_at": "2026-11-29T10:00:00.010Z"}
    e = decode_entry(row, "2026-11-29T10:00:00.000Z")
    assert e.type == "Input" and e.headers == [("x-a", "1")]
    assert e.values == [("request body", '{\n  "name": "<x>"\n}', True)]
    assert e.preview == '{"name":"<x>"}' and e.offset_ms == 10


def test_indexes_match_the_view(tmp_path: Path) -> None:
    """The list's queries use the expression indexes (SQLite matches them only when the
    expression is the view's own)."""
    store = SqliteStore(tmp_path, synchronous="OFF")
    introspector = Introspector(str(store.path))
    try:
        plans = {
            "SELECT id FROM sys_invocation ORDER BY created_at DESC, id DESC LIMIT 51":
                "invocation_created_view",
            ListView.from_query(QueryParams("status=suspended")).count_sql():
                "invocation_ui_status_view",
            ListView.from_query(QueryParams("status=failed")).page_sql():
                "invocation_ui_status_view",
            ListView.from_query(QueryParams("service=S")).count_sql():
                "invocation_service_view",
            ListView.from_query(QueryParams("deployment=dp_1&status=completed")).page_sql():
                "invocation_deployment_view",
            ListView.from_query(QueryParams("handler=h")).count_sql():
                "invocation_handler_view",
            ListView.from_query(QueryParams("key=k")).page_sql():
                "invocation_key_view",
            ListView.from_query(QueryParams("invoked_by=inv_1")).count_sql():
                "invocation_invoked_by_view",
            ListView.from_query(QueryParams("deployment=dp_1")).count_sql():
                "invocation_deployment_view",
            ListView.from_query(QueryParams("idempotency_key=i")).count_sql():
                "invocation_idempotency_view",
            ListView.from_query(QueryParams("sort=modified_at")).page_sql():
                "invocation_modified_view",
            # a large match walks the sort index instead of sorting the matches
            ListView.from_query(QueryParams("service=S")).page_sql(total=10**6):
                "invocation_created_view",
        }
        for sql, index in plans.items():
            plan = " ".join(str(r) for r in introspector.query("EXPLAIN QUERY PLAN " + sql).rows)
            assert index in plan, (sql, plan)
    finally:
        introspector.close()
        store.close()


def test_command_entry_maps_command_index_to_journal_index() -> None:
    from durably.ui.present import Entry, command_entry

    kinds = ["Command", "Command", "Notification", "Command"]
    entries = [Entry(i, k, "X", "", None, None) for i, k in enumerate(kinds)]
    assert command_entry(entries, 0) == 0
    assert command_entry(entries, 2) == 3
    assert command_entry(entries, 3) is None and command_entry(entries, None) is None


def test_failed_attempts_read_from_the_row() -> None:
    from durably.ui.present import failed_attempts

    extra: dict[str, object] = {"attempts": [
        {"at": 1_764_000_000_000, "code": 500, "message": "<b>boom</b>", "entry": 2, "retry": 1},
        {"at": 1_764_000_001_500, "code": 503, "message": "later", "entry": None, "retry": 2},
        "not an attempt", {"code": 1},  # left out
    ]}
    got = failed_attempts(extra)
    assert [(a.retry, a.at, a.code, a.message, a.entry) for a in got] == [
        (1, "2025-11-24T16:00:00.000Z", 500, "<b>boom</b>", 2),
        (2, "2025-11-24T16:00:01.500Z", 503, "later", None),
    ]
    assert failed_attempts({}) == [] and failed_attempts({"attempts": "x"}) == []
