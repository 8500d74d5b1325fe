"""SQL introspection (`POST /query`): Restate's tables, names, types and value formats.

One scenario leaves invocations in every interesting state (completed, awaiting a promise,
holding an object lock, queued in an inbox, backing off, called by another service); then
every table is read with `SELECT *` and each value is checked against the Arrow type Restate
declares for its column (tests/data/restate-1.7.12-sql-columns.json, taken from
restate-server 1.7.12's information_schema). Runs against real Restate too
(`DURABLY_TEST_TARGET=restate`), except for durably's own refusal messages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.support.harness import Env

SERVICES = [
    "Counter",
    "BlockAndWaitWorkflow",
    "CancelTestBlockingService",
    "AwakeableHolder",
    "Proxy",
    "OpsTestService",
]

REFERENCE = json.loads(
    (Path(__file__).parents[1] / "data" / "restate-1.7.12-sql-columns.json").read_text()
)["rows"]
TABLES = [
    "sys_invocation",
    "sys_journal",
    "state",
    "sys_promise",
    "sys_inbox",
    "sys_keyed_service_status",
    "sys_service",
    "sys_deployment",
]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DURATION = re.compile(r"^PT\d+(\.\d+)?S$")


def reference_types(table: str) -> dict[str, str]:
    return {r["column_name"]: r["data_type"] for r in REFERENCE if r["table_name"] == table}


def check_type(data_type: str, value: Any) -> None:
    if data_type == "LargeUtf8":
        assert isinstance(value, str)
    elif data_type in ("UInt64", "UInt32"):
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0
    elif data_type == "Boolean":
        assert isinstance(value, bool)
    elif data_type.startswith("Timestamp"):
        assert isinstance(value, str) and TIMESTAMP.match(value), value
    elif data_type.startswith("Duration"):
        assert isinstance(value, str) and DURATION.match(value), value
    elif data_type == "LargeBinary":
        assert isinstance(value, str) and re.fullmatch(r"([0-9a-f]{2})*", value), value
    elif data_type == "List(LargeUtf8)":
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif data_type == "List(UInt32)":
        assert isinstance(value, list) and all(isinstance(v, int) for v in value)
    else:
        raise AssertionError(f"unexpected type {data_type}")


@pytest.fixture(scope="module")
def scenario(env: Env) -> dict[str, str]:
    ids: dict[str, str] = {}
    key = env.new_key()
    ids["key"] = key
    assert env.call_json("Counter", "add", 5, key=key) == {"oldValue": 0, "newValue": 5}
    # a workflow run awaiting its promise, and one whose promise was resolved
    ids["wf_waiting"], _ = env.send("BlockAndWaitWorkflow", "run", "hello", key=key, idem=False)
    ids["wf_done"], _ = env.send("BlockAndWaitWorkflow", "run", "x", key=key + "-2", idem=False)
    env.poll(lambda: _assert(env.workflow_output("BlockAndWaitWorkflow", key + "-2").status_code
                             in (200, 470)))
    r = env.call("BlockAndWaitWorkflow", "unblock", "done", key=key + "-2", idem=False)
    assert r.status_code == 200, r.text
    # an object invocation holding its key, and one queued behind it
    ids["holder"], _ = env.send("CancelTestBlockingService", "block", "AWAKEABLE", key=key)
    env.poll(lambda: _assert(
        env.call_json("AwakeableHolder", "hasAwakeable", key=key, idem=False) is True))
    ids["inboxed"], _ = env.send("CancelTestBlockingService", "isUnlocked", key=key)
    # an invocation retrying forever
    ids["failing"], _ = env.send("OpsTestService", "alwaysFails", "v")
    # a call from one service to another
    result = env.call_json("Proxy", "call", env.proxy_request("Counter", "add", 1, key=key + "-p"))
    assert result
    ids["proxy_key"] = key + "-p"

    def inboxed() -> None:
        rows = env.query(f"SELECT status FROM sys_invocation WHERE id = '{ids['inboxed']}'")
        assert rows == [{"status": "pending"}]

    env.poll(inboxed)

    def retried() -> None:
        rows = env.query(
            f"SELECT status, retry_count, last_failure FROM sys_invocation "
            f"WHERE id = '{ids['failing']}'"
        )
        assert rows and rows[0].get("retry_count", 0) >= 2
        assert "always failing" in rows[0]["last_failure"]

    env.poll(retried, timeout=30)
    return ids


def _assert(cond: bool) -> None:
    assert cond


@pytest.mark.parametrize("table", TABLES)
def test_columns_and_types_match_restate(env: Env, scenario: dict[str, str], table: str) -> None:
    expected = reference_types(table)
    rows = env.query(f"SELECT * FROM {table}")
    assert rows, f"{table} is empty after the scenario"
    filled: set[str] = set()
    for row in rows:
        unknown = set(row) - set(expected)
        assert not unknown, f"{table}: columns Restate does not have: {unknown}"
        for column, value in row.items():
            check_type(expected[column], value)
            filled.add(column)
    # every column is declared (so the official CLI's column lists parse), typed like Restate's
    declared = env.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_name = '{table}'"
    )
    assert {r["column_name"]: r["data_type"] for r in declared} == expected


def test_sys_invocation_states(env: Env, scenario: dict[str, str]) -> None:
    ids = scenario
    rows = {
        r["id"]: r
        for r in env.query(
            "SELECT id, target, target_service_ty, status, retry_count, last_failure, "
            "invoked_by, invoked_by_target, completion_result, journal_size FROM sys_invocation"
        )
    }
    assert rows[ids["wf_done"]]["status"] == "completed"
    assert rows[ids["wf_done"]]["completion_result"] == "success"
    assert rows[ids["wf_done"]]["target"] == f"BlockAndWaitWorkflow/{ids['key']}-2/run"
    assert rows[ids["wf_done"]]["target_service_ty"] == "workflow"
    assert rows[ids["wf_waiting"]]["status"] in ("running", "suspended")
    assert rows[ids["holder"]]["status"] in ("running", "suspended")
    assert rows[ids["inboxed"]]["status"] == "pending"
    failing = rows[ids["failing"]]
    assert failing["status"] in ("backing-off", "running")
    assert failing["retry_count"] >= 2
    assert "always failing: v" in failing["last_failure"]
    children = [r for r in rows.values() if r.get("invoked_by_target") == "Proxy/call"]
    assert children and children[0]["invoked_by"] == "service"
    assert children[0]["target"] == f"Counter/{ids['proxy_key']}/add"


def test_status_histogram_and_count(env: Env, scenario: dict[str, str]) -> None:
    rows = env.query("SELECT status, count(*) AS n FROM sys_invocation GROUP BY status ORDER BY status")
    statuses = {r["status"]: r["n"] for r in rows}
    assert statuses["completed"] >= 4
    assert statuses["pending"] == 1


def test_sys_invocation_status_shows_the_stored_status(env: Env, scenario: dict[str, str]) -> None:
    """sys_invocation names statuses for people; sys_invocation_status keeps the stored ones."""
    # the holder awaits an awakeable: running over h2, suspended in request/response mode
    holder = ("invoked", "running") if env.mode == "h2" else ("suspended", "suspended")
    expected = {
        "holder": holder,
        "inboxed": ("inboxed", "pending"),
        "failing": ("invoked", "backing-off"),
        "wf_done": ("completed", "completed"),
    }
    for name, (stored, shown) in expected.items():
        inv = scenario[name]
        raw = env.query(f"SELECT status FROM sys_invocation_status WHERE id = '{inv}'")
        named = env.query(f"SELECT status FROM sys_invocation WHERE id = '{inv}'")
        assert (raw, named) == ([{"status": stored}], [{"status": shown}]), name


def test_services_status_queries_of_the_official_cli(env: Env, scenario: dict[str, str]) -> None:
    """`restate services status` aggregates with DataFusion's `FIRST_VALUE(x ORDER BY k)` and
    with `first_value(x)` as a plain aggregate."""
    key = scenario["key"]
    queued = env.query(
        "SELECT target_service_name, target_handler_name, 'pending' as status, "
        "COUNT(1) as num_invocations, MIN(created_at) as oldest_at, "
        "FIRST_VALUE(id ORDER BY created_at ASC) as oldest_invocation "
        "FROM sys_invocation_status WHERE status == 'inboxed' "
        "AND target_service_name IN ('CancelTestBlockingService') "
        "GROUP BY target_service_name, target_handler_name"
    )
    assert [(r["target_handler_name"], r["oldest_invocation"]) for r in queued] == [
        ("isUnlocked", scenario["inboxed"])
    ]
    assert queued[0]["num_invocations"] == 1
    holders = env.query(
        "SELECT target_service_name as service_name, target_service_key as service_key, "
        "status as invocation_status, first_value(id) as invocation_holding_lock, "
        "first_value(target_handler_name) as invocation_method_holding_lock, "
        "sum(retry_count) as num_retries FROM sys_invocation "
        "WHERE status != 'pending' AND target_service_name IN ('CancelTestBlockingService') "
        f"AND target_service_key = '{key}' "
        "GROUP BY target_service_name, target_service_key, status"
    )
    assert len(holders) == 1
    assert holders[0]["invocation_holding_lock"] == scenario["holder"]
    assert holders[0]["invocation_method_holding_lock"] == "block"
    newest = env.query(
        "SELECT FIRST_VALUE(id ORDER BY created_at DESC) AS newest, "
        "LAST_VALUE(id ORDER BY created_at ASC) AS newest_too FROM sys_invocation "
        f"WHERE target_service_key = '{key}' AND target_service_name = 'CancelTestBlockingService'"
    )
    assert newest == [{"newest": scenario["inboxed"], "newest_too": scenario["inboxed"]}]


def test_invocations_list_count_query_of_the_official_cli(
    env: Env, scenario: dict[str, str]
) -> None:
    """`restate invocations list --service S` counts through an unaliased derived table whose
    inner alias qualifies the outer WHERE (DataFusion resolves it)."""
    where = "target_service_name IN ('CancelTestBlockingService') AND status != 'completed'"
    counted = env.query(
        "SELECT COUNT(1) AS n FROM (SELECT\n    *\n  FROM sys_invocation inv\n  LIMIT 50000\n  )\n"
        f"  WHERE inv.{where}"
    )
    plain = env.query(f"SELECT COUNT(1) AS n FROM sys_invocation WHERE {where}")
    assert counted == plain and plain[0]["n"] >= 2


def test_sys_journal(env: Env, scenario: dict[str, str]) -> None:
    # the official CLI's journal query (`index` is a reserved word in SQLite)
    rows = env.query(
        "SELECT sj.index, sj.entry_type, sj.name, sj.version, sj.entry_json, sj.appended_at "
        f"FROM sys_journal sj WHERE sj.id = '{scenario['wf_done']}' ORDER BY index DESC LIMIT 100"
    )
    types = [r["entry_type"] for r in reversed(rows)]
    assert types == [
        "Command: Input",
        "Command: SetState",
        "Command: GetPromise",
        "Notification: GetPromise",
        "Command: PeekPromise",
        "Notification: PeekPromise",
        "Command: Output",
    ]
    assert [r["index"] for r in rows] == list(range(6, -1, -1))
    assert all(json.loads(r["entry_json"]) for r in rows)


def test_state_promise_inbox_and_locks(env: Env, scenario: dict[str, str]) -> None:
    key = scenario["key"]
    state = env.query(
        f"SELECT key, value_utf8, value, value_length FROM state "
        f"WHERE service_name = 'Counter' AND service_key = '{key}'"
    )
    assert state == [{"key": "counter", "value_utf8": "5", "value": "35", "value_length": 1}]
    promises = {
        r["service_key"]: r
        for r in env.query("SELECT * FROM sys_promise WHERE service_name = 'BlockAndWaitWorkflow'")
    }
    assert promises[key + "-2"]["completed"] is True
    assert promises[key + "-2"]["completion_success_value_utf8"] == '"done"'
    assert promises[key]["completed"] is False
    inbox = env.query(f"SELECT id, service_name, service_key FROM sys_inbox WHERE service_key = '{key}'")
    assert inbox == [
        {"id": scenario["inboxed"], "service_name": "CancelTestBlockingService", "service_key": key}
    ]
    locks = env.query(
        f"SELECT invocation_id FROM sys_keyed_service_status WHERE service_key = '{key}'"
    )
    assert locks == [{"invocation_id": scenario["holder"]}]


def test_services_and_deployments(env: Env, scenario: dict[str, str]) -> None:
    services = {r["name"]: r for r in env.query("SELECT * FROM sys_service")}
    assert set(SERVICES) <= set(services)
    assert services["Counter"]["ty"] == "virtual_object"
    assert services["Proxy"]["ty"] == "service"
    assert services["BlockAndWaitWorkflow"]["ty"] == "workflow"
    assert services["Counter"]["public"] is True
    deployments = env.query("SELECT * FROM sys_deployment")
    assert len(deployments) == 1
    assert set(SERVICES) <= set(deployments[0]["services"])
    assert deployments[0]["id"] == services["Counter"]["deployment_id"]


def test_arrow_answer_by_default(env: Env, scenario: dict[str, str]) -> None:
    r = env.client.post(
        f"{env.admin}/query",
        json={"query": "SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 50000) "
                       "WHERE status != 'completed'"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert r.content.startswith(b"\xff\xff\xff\xff")
    assert r.content.endswith(b"\xff\xff\xff\xff\x00\x00\x00\x00")


# -- refusals (durably's own messages) ----------------------------------------------------

REFUSED = [
    ("DELETE FROM sys_invocation", "only SELECT"),
    ("INSERT INTO state VALUES (1)", "only SELECT"),
    ("DROP VIEW sys_invocation", "only SELECT"),
    ("PRAGMA table_info(invocation)", "only SELECT"),
    ("ATTACH DATABASE '/tmp/x.db' AS x", "only SELECT"),
    ("SELECT * FROM invocation", "not an introspection table"),
    ("SELECT count(*) FROM invocation", "not an introspection table"),
    ("SELECT * FROM sqlite_master", "not an introspection table"),
    ("SELECT * FROM sqlite_temp_master", "not an introspection table"),
    # durably's tables are not in the query connection's namespace (storage.introspection):
    # `main` holds empty stand-ins, and the store is attached under a secret name
    ("SELECT count(*) FROM main.invocation", "not an introspection table"),
    ('SELECT count(*) FROM "main".journal', "not an introspection table"),
    ("WITH sys_inbox AS (SELECT * FROM journal) SELECT * FROM sys_inbox", "not an introspection"),
    ("SELECT * FROM pragma_table_info('invocation')", "only SELECT"),
    ("WITH x AS (SELECT 1) DELETE FROM sys_inbox", "only SELECT"),
]


# SQLite's table-valued functions do not exist on PostgreSQL: an SQL error there
NOT_ON_POSTGRESQL = {"SELECT * FROM pragma_table_info('invocation')"}


@pytest.mark.parametrize("sql,reason", REFUSED, ids=[s for s, _ in REFUSED])
def test_refused(env: Env, sql: str, reason: str) -> None:
    if env.target == "restate":
        pytest.skip("durably's refusal messages")
    r = env.client.post(f"{env.admin}/query", json={"query": sql},
                        headers={"accept": "application/json"})
    if env.server.store == "postgresql" and sql in NOT_ON_POSTGRESQL:
        assert r.status_code == 400, r.text
        assert r.json()["message"].startswith("SQL error: function pragma_table_info")
        return
    assert r.status_code == 400, r.text
    assert reason in r.json()["message"]
    assert r.json()["message"].startswith("Query refused")


def test_bad_sql_is_400_with_the_engine_message(env: Env) -> None:
    r = env.client.post(f"{env.admin}/query", json={"query": "SELEC nope"},
                        headers={"accept": "application/json"})
    assert r.status_code == 400
    assert "SELEC" in r.json()["message"]


def test_journal_columns_decode_as_the_protocol_does(env: Env, scenario: dict[str, str]) -> None:
    """Each decoded sys_journal column is what `storage.journal_view` makes of the raw entry
    (on PostgreSQL the decoding is the views' PL/pgSQL, so this holds both to one rendering)."""
    if env.target == "restate":
        pytest.skip("durably's rendering of journal entries")
    from durably.protocol.messages import MESSAGE_CLASSES
    from durably.storage.introspection import _iso_ms
    from durably.storage.journal_view import entry_field, entry_type_name

    type_ids = {entry_type_name(t): int(t) for t in MESSAGE_CLASSES}
    rows = env.query(
        "SELECT id, index, entry_type, name, raw, invoked_target, invoked_id, sleep_wakeup_at, "
        "promise_name, entry_json, entry_lite_json FROM sys_journal ORDER BY id, index"
    )
    assert len({r["entry_type"] for r in rows}) >= 8, rows
    for row in rows:
        type_id = type_ids[row["entry_type"]]
        body = bytes.fromhex(row.get("raw", ""))
        for field in ("name", "invoked_target", "promise_name", "entry_json", "entry_lite_json"):
            assert row.get(field) == entry_field(type_id, body, field), (field, row)
        wake = entry_field(type_id, body, "sleep_wakeup_at")
        assert row.get("sleep_wakeup_at") == (None if wake is None else _iso_ms(int(wake)))
    calls = [r for r in rows if r["entry_type"] == "Command: Call"]
    assert calls and all(r["invoked_id"].startswith("inv_") for r in calls)
