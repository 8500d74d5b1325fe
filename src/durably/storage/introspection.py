"""SQL introspection: Restate's `sys_*` tables as read-only SQLite views over our storage.

`POST /query` answers SQL over tables named and shaped like Restate's (`sys_invocation`,
`sys_journal`, `state`, ...). SQLite is the query engine:

- each query runs on a separate read-only connection (`mode=ro`); with WAL it reads a
  committed snapshot and never blocks the engine's writer;
- the tables are TEMP views declared with every column Restate has (NULL where durably keeps
  nothing comparable), so `SELECT *` and the official CLI's column lists work;
- protobuf journal entries and encoded results are decoded by Python user functions;
- durably's own tables are unreachable by construction, not by reading the SQL: the query
  connection's `main` is an empty in-memory database and the store is attached under a
  random schema name; the authorizer admits a read of a stored table only when SQLite reports
  it for one of our views and it is one of the (table, column) reads that view's definition
  makes, recorded when the connection opens. A CTE named like a view therefore reaches at most
  the columns that view already shows, and nothing else (meta, timers, outbox, ...) at all;
- the authorizer refuses anything but reads (no writes, DDL, PRAGMA, ATTACH); a progress
  handler bounds the time a query may take, SQLite's length limit the size of one value, and
  a byte budget the size of the answer.

Values come out as SQLite values; `render_value` turns them into what Restate's JSON output
prints (RFC 3339 timestamps, ISO 8601 durations, hex for binary, booleans, lists). Timestamps
are produced by the views as RFC 3339 text, so they sort and compare as times.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from durably.ids import partition_key_for
from durably.storage.journal_view import entry_field

__all__ = [
    "COLUMNS",
    "Introspector",
    "QueryError",
    "QueryRefused",
    "QueryResult",
    "TABLES",
    "column_type",
]

# the longest string or blob a query may make (SQLITE_LIMIT_LENGTH)
MAX_VALUE_BYTES = 48 * 1024 * 1024
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1

# Arrow type names as Restate's information_schema prints them.
S = "LargeUtf8"
U64 = "UInt64"
U32 = "UInt32"
B = "Boolean"
T = 'Timestamp(ms, "+00:00")'
D = "Duration(ms)"
BIN = "LargeBinary"
LS = "List(LargeUtf8)"
LU = "List(UInt32)"


def _cols(spec: str) -> list[tuple[str, str]]:
    types = {"S": S, "U64": U64, "U32": U32, "B": B, "T": T, "D": D, "BIN": BIN, "LS": LS, "LU": LU}
    out = []
    for item in spec.split():
        name, ty = item.split(":")
        out.append((name, types[ty]))
    return out


# Every column of Restate 1.7.12's tables, in Restate's order (see information_schema.columns).
_STATUS_COLS = (
    "id:S vqueue_id:S status:S completion_result:S completion_failure:S target:S "
    "target_service_name:S target_service_key:S target_handler_name:S target_service_ty:S "
    "scope:S limit_key:S idempotency_key:S invoked_by:S invoked_by_id:S "
    "invoked_by_subscription_id:S invoked_by_service_name:S invoked_by_target:S "
    "restarted_from:S pinned_deployment_id:S pinned_service_protocol_version:U32 trace_id:S "
    "journal_size:U32 journal_commands_size:U32 created_at:T created_using_restate_version:S "
    "modified_at:T inboxed_at:T scheduled_at:T scheduled_start_at:T running_at:T "
    "completed_at:T completion_retention:D journal_retention:D "
    "suspended_waiting_for_completions:LU suspended_waiting_for_signals:LU "
    "suspended_waiting_future_json:S"
)
_STATE_COLS = (
    "id:S in_flight:B retry_count:U64 last_start_at:T last_attempt_deployment_id:S "
    "last_attempt_server:S next_retry_at:T last_failure:S last_failure_error_code:S "
    "last_failure_related_command_index:U64 last_failure_related_command_name:S "
    "last_failure_related_command_type:S last_failure_related_entry_index:U64 "
    "last_failure_related_entry_name:S last_failure_related_entry_type:S "
    "last_awaiting_on_future_json:S"
)
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "sys_invocation": _cols(
        "id:S vqueue_id:S target:S target_service_name:S target_service_key:S "
        "target_handler_name:S target_service_ty:S scope:S limit_key:S idempotency_key:S "
        "invoked_by:S invoked_by_service_name:S invoked_by_id:S invoked_by_subscription_id:S "
        "invoked_by_target:S restarted_from:S pinned_deployment_id:S "
        "pinned_service_protocol_version:U32 trace_id:S journal_size:U32 "
        "journal_commands_size:U32 created_at:T created_using_restate_version:S modified_at:T "
        "inboxed_at:T scheduled_at:T scheduled_start_at:T running_at:T completed_at:T "
        "completion_retention:D journal_retention:D suspended_waiting_for_completions:LU "
        "suspended_waiting_for_signals:LU suspended_waiting_future_json:S retry_count:U64 "
        "last_start_at:T next_retry_at:T last_attempt_deployment_id:S last_attempt_server:S "
        "last_failure:S last_failure_error_code:S last_failure_related_entry_index:U64 "
        "last_failure_related_entry_name:S last_failure_related_entry_type:S "
        "last_failure_related_command_index:U64 last_failure_related_command_name:S "
        "last_failure_related_command_type:S last_awaiting_on_future_json:S status:S "
        "completion_result:S completion_failure:S"
    ),
    "sys_invocation_status": _cols("partition_key:U64 " + _STATUS_COLS),
    "sys_invocation_state": _cols("partition_key:U64 " + _STATE_COLS),
    "sys_journal": _cols(
        "partition_key:U64 id:S index:U32 entry_type:S name:S completed:B invoked_id:S "
        "invoked_target:S sleep_wakeup_at:T promise_name:S raw:BIN raw_length:U64 version:U32 "
        "entry_json:S entry_lite_json:S appended_at:T"
    ),
    "state": _cols(
        "partition_key:U64 scope:S service_name:S service_key:S key:S key_length:U64 "
        "value_utf8:S value:BIN value_length:U64"
    ),
    "sys_promise": _cols(
        "partition_key:U64 scope:S service_name:S service_key:S key:S completed:B "
        "completion_success_value:BIN completion_success_value_utf8:S completion_failure:S"
    ),
    "sys_inbox": _cols(
        "partition_key:U64 service_name:S service_key:S id:S sequence_number:U64 created_at:T"
    ),
    "sys_keyed_service_status": _cols(
        "partition_key:U64 service_name:S service_key:S invocation_id:S"
    ),
    "sys_service": _cols("name:S revision:U64 public:B ty:S deployment_id:S"),
    "sys_deployment": _cols(
        "id:S ty:S endpoint:S created_at:T min_service_protocol_version:U32 "
        "max_service_protocol_version:U32 services:LS"
    ),
    # durably's own: Kafka records that could not become invocations (durably.kafka)
    "durably_kafka_parked_record": _cols(
        "id:U64 subscription_id:S topic:S partition:U32 offset:U64 key:BIN key_utf8:S "
        "value:BIN value_utf8:S timestamp:T error:S parked_at:T"
    ),
}
TABLES = tuple(COLUMNS)


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few SQL spellings the views' expressions need that differ by store: the views are
    described once (the `*_exprs` functions below) and rendered for SQLite here and for
    PostgreSQL by `storage.postgres_introspection`."""

    name: str

    def ts(self, expr: str) -> str:
        """Epoch milliseconds -> RFC 3339 text with milliseconds, as Restate prints them."""
        if self.name == "sqlite":
            return f"strftime('%Y-%m-%dT%H:%M:%fZ', ({expr}) / 1000.0, 'unixepoch')"
        return f"durably_ts(({expr})::bigint)"

    def before_slash(self, expr: str) -> str:
        if self.name == "sqlite":
            return f"substr({expr}, 1, instr({expr}, '/') - 1)"
        return f"split_part({expr}, '/', 1)"

    def json_item(self, expr: str, index: int) -> str:
        if self.name == "sqlite":
            return f"json_extract({expr}, '$[{index}]')"
        return f"(({expr})::json -> {index})::text"

    def result(self, expr: str, what: str) -> str:
        # PostgreSQL functions have one result type: the value (bytes) has its own function
        if self.name != "sqlite" and what == "value":
            return f"durably_result_value({expr})"
        return f"durably_result({expr}, '{what}')"

    def is_success(self, expr: str) -> str:
        """A stored result starts with 'V' for a value (see engine.model.Result.encode)."""
        if self.name == "sqlite":
            return f"substr({expr}, 1, 1) = x'56'"
        return f"substr({expr}, 1, 1) = '\\x56'::bytea"

    def is_distinct(self, expr: str, literal: str) -> str:
        if self.name == "sqlite":
            return f"{expr} IS NOT {literal}"
        return f"{expr} IS DISTINCT FROM {literal}"

    @property
    def null_bytes(self) -> str:
        return "NULL" if self.name == "sqlite" else "NULL::bytea"

    @property
    def stored_partition_keys(self) -> bool:
        """PostgreSQL rows carry their partition key; SQLite's state, promise and journal
        rows do not, so the views compute it."""
        return self.name != "sqlite"


SQLITE = Dialect("sqlite")
POSTGRESQL = Dialect("postgresql")


def _ts(expr: str) -> str:
    return SQLITE.ts(expr)


_IN_FLIGHT = "i.status IN ('invoked', 'backing-off', 'paused')"
_TARGET = (
    "i.service || '/' || CASE WHEN i.key IS NULL THEN '' ELSE i.key || '/' END || i.handler"
)
# Our stored statuses -> Restate's: an inboxed invocation waits for its key's lock
# ("pending"); an invoked one has an attempt in flight ("running"). Others keep their name.
RESTATE_STATUS = {"inboxed": "pending", "invoked": "running"}
_STATUS = (
    "CASE i.status "
    + " ".join(f"WHEN '{ours}' THEN '{theirs}'" for ours, theirs in RESTATE_STATUS.items())
    + " ELSE i.status END"
)
# sys_invocation_status shows Restate's stored status, before sys_invocation's naming:
# 'inboxed' (not 'pending'); 'invoked' for running and backing-off alike
RESTATE_RAW_STATUS = {"pending": "inboxed", "backing-off": "invoked"}
_RAW_STATUS = (
    "CASE i.status "
    + " ".join(f"WHEN '{ours}' THEN '{theirs}'" for ours, theirs in RESTATE_RAW_STATUS.items())
    + " ELSE i.status END"
)
_FAILURE_JSON = "CAST(substr(i.result, 2) AS TEXT)"


def invocation_exprs(d: Dialect) -> dict[str, str]:
    """sys_invocation's columns over durably's `invocation` table (alias `i`)."""
    return {
        "partition_key": "i.partition_key",
        "id": "i.id",
        "target": _TARGET,
        "target_service_name": "i.service",
        "target_service_key": "i.key",
        "target_handler_name": "i.handler",
        "target_service_ty": "i.service_ty",
        "idempotency_key": "i.idempotency_key",
        "invoked_by": "i.invoked_by",
        "invoked_by_service_name": (
            "CASE WHEN i.invoked_by_target IS NULL THEN NULL ELSE "
            f"{d.before_slash('i.invoked_by_target')} END"
        ),
        # a subscription's invocations keep the subscription's id in invoked_by_id
        "invoked_by_id": (
            "CASE WHEN i.invoked_by = 'subscription' THEN NULL ELSE i.invoked_by_id END"
        ),
        "invoked_by_subscription_id": (
            "CASE WHEN i.invoked_by = 'subscription' THEN i.invoked_by_id END"
        ),
        "invoked_by_target": "i.invoked_by_target",
        # Restate pins the deployment (and protocol version) when the first attempt starts.
        "pinned_deployment_id": (
            "CASE WHEN i.protocol_version IS NULL THEN NULL ELSE i.deployment_id END"
        ),
        "pinned_service_protocol_version": "i.protocol_version",
        "journal_size": "i.journal_length",
        "journal_commands_size": (
            "(SELECT count(*) FROM main.journal j WHERE j.invocation_id = i.id "
            "AND j.entry_type BETWEEN 1024 AND 32767)"
        ),
        "created_at": d.ts("i.created_at"),
        "modified_at": d.ts("i.modified_at"),
        "inboxed_at": d.ts("i.inboxed_at"),
        "scheduled_at": d.ts(
            "CASE WHEN i.execution_time IS NULL THEN NULL ELSE i.created_at END"
        ),
        "scheduled_start_at": d.ts("i.execution_time"),
        "running_at": d.ts("i.running_at"),
        "completed_at": d.ts("i.completed_at"),
        "completion_retention": "durably_duration(i.expires_at - i.completed_at)",
        "journal_retention": "durably_duration(i.expires_at - i.completed_at)",
        "suspended_waiting_for_completions": (
            f"CASE WHEN i.waiting IS NULL THEN NULL ELSE {d.json_item('i.waiting', 0)} END"
        ),
        "suspended_waiting_for_signals": (
            f"CASE WHEN i.waiting IS NULL THEN NULL ELSE {d.json_item('i.waiting', 1)} END"
        ),
        "in_flight": "i.status = 'invoked'",
        # Restate counts attempts (the running one included); we count failed attempts.
        "retry_count": (
            "CASE i.status WHEN 'invoked' THEN i.retry_count + 1 "
            "WHEN 'backing-off' THEN i.retry_count WHEN 'paused' THEN i.retry_count END"
        ),
        "last_start_at": d.ts(f"CASE WHEN {_IN_FLIGHT} THEN i.running_at END"),
        "next_retry_at": d.ts("CASE WHEN i.status = 'backing-off' THEN i.next_retry_at END"),
        "last_attempt_deployment_id": (
            f"CASE WHEN {_IN_FLIGHT} AND i.protocol_version IS NOT NULL THEN i.deployment_id END"
        ),
        "last_failure": (
            f"CASE WHEN {_IN_FLIGHT} AND i.last_failure IS NOT NULL THEN "
            "'[' || i.last_failure_code || '] ' || i.last_failure END"
        ),
        "last_failure_error_code": (
            f"CASE WHEN {_IN_FLIGHT} THEN CAST(i.last_failure_code AS TEXT) END"
        ),
        "status": _STATUS,
        # in SQL rather than through durably_result: the web UI filters a million rows by it
        "completion_result": (
            f"CASE WHEN i.result IS NULL THEN NULL WHEN {d.is_success('i.result')} "
            "THEN 'success' ELSE 'failure' END"
        ),
        "completion_failure": _failure_text(d),
    }


def _failure_text(d: Dialect) -> str:
    """sys_invocation.completion_failure. On SQLite in plain SQL (the same text as
    durably_result(i.result, 'failure') gives): the web UI's status, which tells failed from
    cancelled and killed, is indexed, and an index may only use SQLite's own functions. A
    result that is not JSON gives NULL, never an error (an index expression that raises would
    fail the write)."""
    if d.name != "sqlite":
        return d.result("i.result", "failure")
    return (
        f"CASE WHEN i.result IS NULL OR {d.is_success('i.result')} "
        f"OR NOT json_valid({_FAILURE_JSON}) THEN NULL "
        f"ELSE '[' || json_extract({_FAILURE_JSON}, '$.code') || '] ' || "
        f"json_extract({_FAILURE_JSON}, '$.message') END"
    )


_INVOCATION_EXPRS = invocation_exprs(SQLITE)


def journal_exprs(d: Dialect) -> dict[str, str]:
    """sys_journal's columns over durably's `journal` table (alias `j`)."""
    jf = "durably_journal(j.entry_type, j.body, '{}')"
    return {
        "partition_key": (
            "j.partition_key" if d.stored_partition_keys else
            "(SELECT i.partition_key FROM main.invocation i WHERE i.id = j.invocation_id)"
        ),
        "id": "j.invocation_id",
        "index": "j.idx",
        "entry_type": jf.format("entry_type"),
        "name": jf.format("name"),
        # the callee's id is in the CallInvocationId notification the call command points at
        "invoked_id": (
            "CASE WHEN j.entry_type IN (1037, 1038) THEN (SELECT "
            "durably_journal(n.entry_type, n.body, 'invocation_id') FROM main.journal n "
            "WHERE n.invocation_id = j.invocation_id AND n.entry_type = 32782 AND "
            "durably_journal(n.entry_type, n.body, 'completion_id') = "
            + jf.format("invocation_id_idx")
            + " LIMIT 1) END"
        ),
        "invoked_target": jf.format("invoked_target"),
        "sleep_wakeup_at": d.ts(jf.format("sleep_wakeup_at")),
        "promise_name": jf.format("promise_name"),
        "raw": "j.body",
        "raw_length": "length(j.body)",
        "version": "2",
        "entry_json": jf.format("entry_json"),
        "entry_lite_json": jf.format("entry_lite_json"),
        "appended_at": d.ts("j.appended_at"),
    }


def _state_exprs(d: Dialect) -> dict[str, str]:
    return {
        "partition_key": (
            "s.partition_key" if d.stored_partition_keys else "durably_partition_key(s.key)"
        ),
        "service_name": "s.service",
        "service_key": "s.key",
        "key": "durably_utf8(s.name)",
        "key_length": "length(s.name)",
        "value_utf8": "durably_utf8(s.value)",
        "value": "s.value",
        "value_length": "length(s.value)",
    }


def _promise_exprs(d: Dialect) -> dict[str, str]:
    return {
        "partition_key": (
            "p.partition_key" if d.stored_partition_keys else "durably_partition_key(p.key)"
        ),
        "service_name": "p.service",
        "service_key": "p.key",
        "key": "p.name",
        "completed": "p.result IS NOT NULL",
        "completion_success_value": d.result("p.result", "value"),
        "completion_success_value_utf8": d.result("p.result", "utf8"),
        "completion_failure": d.result("p.result", "failure"),
    }


_INBOX_EXPRS = {
    "partition_key": "i.partition_key",
    "service_name": "i.service",
    "service_key": "i.key",
    "id": "i.id",
    "sequence_number": "i.inbox_seq",
    "created_at": _ts("i.created_at"),
}
_KEYED_EXPRS = {
    "partition_key": "i.partition_key",
    "service_name": "i.service",
    "service_key": "i.key",
    "invocation_id": "i.id",
}


def _holds_lock(d: Dialect) -> str:
    """Who holds a virtual object key's lock: its running exclusive handler (Restate lists no
    workflows here)."""
    return (
        "i.status IN ('invoked', 'suspended', 'backing-off', 'paused') AND "
        "i.service_ty = 'virtual_object' AND " + d.is_distinct("i.handler_ty", "'shared'")
    )


def _promises(d: Dialect) -> str:
    """Completed promises, and those someone awaits that nobody completed yet."""
    pk = "partition_key, " if d.stored_partition_keys else ""
    lpk = "l.partition_key, " if d.stored_partition_keys else ""
    return (
        f"(SELECT {pk}service, key, name, result FROM main.promise UNION ALL "
        f"SELECT DISTINCT {lpk}l.service, l.key, l.name, {d.null_bytes} "
        "FROM main.promise_listener l "
        "WHERE NOT EXISTS (SELECT 1 FROM main.promise q WHERE q.service = l.service "
        "AND q.key = l.key AND q.name = l.name)) p"
    )


# The web UI's status of an invocation (Restate's UI's): the status, and for a completed one
# how it ended. Written over sys_invocation's columns, so that the UI's SQL stays plain SQL
# over the view; indexed below (its one-click status filters and the overview's counts).
UI_STATUS = (
    "CASE WHEN status = 'completed' THEN CASE WHEN completion_result = 'success' "
    "THEN 'succeeded' WHEN completion_failure IN ('[409] canceled', '[409] cancelled') "
    "THEN 'cancelled' WHEN completion_failure = '[409] killed' THEN 'killed' "
    "ELSE 'failed' END ELSE status END"
)
# every value UI_STATUS takes (the stored statuses under their sys_invocation names)
UI_STATUSES = (
    "pending", "scheduled", "running", "suspended", "backing-off", "paused",
    "succeeded", "failed", "cancelled", "killed",
)
_PLAIN_COLUMN = re.compile(r"i\.[a-z_]+")
_IDENT = re.compile(r"'(?:[^']|'')*'|\b[a-z_]+\b")


def over_table(view_sql: str, row: str = "") -> str:
    """An expression over sys_invocation's columns -> the same over the stored table, i.e.
    exactly what SQLite makes of it when it flattens the view into a query (which is what
    an index on an expression must match). `row`: a prefix for the table's columns (a
    trigger's `NEW.`)."""

    if view_sql in _INVOCATION_EXPRS:
        return f"({_INVOCATION_EXPRS[view_sql]})".replace("i.", row)

    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        expr = _INVOCATION_EXPRS.get(word)
        if expr is None or word.startswith("'"):
            return word
        if _PLAIN_COLUMN.fullmatch(expr):
            return expr
        # the flattener marks a view's expression used inside another one with its
        # collation (BINARY here); the index must say the same to be identical
        return f"({expr}) COLLATE BINARY"

    return _IDENT.sub(swap, view_sql).replace("i.", row)


# (name, sys_invocation expressions, condition): an index per filter of the web UI's list,
# each ending with the creation time so that a filtered page comes newest first straight from
# it (keyset paging) and its exact count is a range of it (the totals of service, handler,
# deployment and status filters come from ui_count_ddl's table). SQLite matches an index on an
# expression only when the query's expression is identical, hence built from the view's own
# expressions. The columns a row keeps from its creation on (service, handler, key, ...) are
# never rewritten by the store's upsert (see storage.sqlite), so their indexes cost only the
# insert; those on status and times move when the row does. Partial where most rows have
# nothing to find.
_INDEXES: list[tuple[str, tuple[str, ...], str]] = [
    ("created_view", ("created_at",), ""),
    ("ui_status_view", (UI_STATUS, "created_at"), ""),
    ("modified_view", ("modified_at",), ""),
    ("service_view", ("target_service_name", "created_at"), ""),
    ("handler_view", ("target_handler_name", "target_service_name", "created_at"), ""),
    ("key_view", ("target_service_key", "target_service_name", "created_at"),
     "target_service_key IS NOT NULL"),
    ("invoked_by_view", ("invoked_by_id", "created_at"), "invoked_by_id IS NOT NULL"),
    ("deployment_view", ("pinned_deployment_id", "created_at"), ""),
    ("idempotency_view", ("idempotency_key", "created_at"), "idempotency_key IS NOT NULL"),
]
# indexes of earlier schema versions, dropped when a store is opened
_DROPPED_INDEXES = ("status_view",)


def ui_count_ddl(table: str) -> str:
    """A table of how many invocations each (service, handler, pinned deployment, UI status)
    has: the overview's counts, and the exact total of a list filtered by those, without
    counting up to a million index entries. The store keeps it up to date in the same
    transaction as its writes of the invocation table `table` (storage.sqlite); this creates
    it and fills it from the rows already there (run it in one transaction)."""
    counts = f"{table}_ui_count"
    return (
        f"CREATE TABLE {counts} (service TEXT NOT NULL, handler TEXT NOT NULL, "
        "deployment TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, "
        "PRIMARY KEY (service, handler, deployment, status)) WITHOUT ROWID;\n"
        f"INSERT INTO {counts}(service, handler, deployment, status, n) SELECT service, "
        f"handler, coalesce({over_table('pinned_deployment_id')}, ''), {over_table(UI_STATUS)}, "
        f"count(*) FROM {table} GROUP BY 1, 2, 3, 4;\n"
    )


def ui_status(status: str, result: bytes | None) -> str:
    """UI_STATUS of a stored row, in Python (the same value as the SQL)."""
    if status != "completed":
        return RESTATE_STATUS.get(status, status)
    if result is not None and result[:1] == b"V":
        return "succeeded"
    if result is None:
        return "failed"
    try:
        failure = orjson.loads(result[1:])
        code, message = failure["code"], failure["message"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return "failed"
    if code == 409 and message in ("canceled", "cancelled"):
        return "cancelled"
    return "killed" if code == 409 and message == "killed" else "failed"


def introspection_indexes(table: str) -> str:
    """The DDL of the list's indexes on the stored invocation table `table` (idempotent)."""
    out = [f"DROP INDEX IF EXISTS {table}_{name};\n" for name in _DROPPED_INDEXES]
    for name, exprs, where in _INDEXES:
        cols = ", ".join(over_table(e) for e in exprs)
        cond = f" WHERE {over_table(where)}" if where else ""
        out.append(f"CREATE INDEX IF NOT EXISTS {table}_{name} ON {table}({cols}){cond};\n")
    return "".join(out)


def view_definitions(d: Dialect) -> list[tuple[str, dict[str, str], str]]:
    """(view, column expressions, FROM clause) of every introspection table. `main.` names a
    stored table, `temp._durably_service` and `temp._durably_deployment` the registry's rows
    (each store puts its own names there)."""
    inbox = {**_INBOX_EXPRS, "created_at": d.ts("i.created_at")}
    return [
        ("sys_invocation", invocation_exprs(d), "main.invocation i"),
        (
            "sys_invocation_status",
            {**invocation_exprs(d), "status": _RAW_STATUS},
            "main.invocation i",
        ),
        ("sys_invocation_state", invocation_exprs(d), f"main.invocation i WHERE {_IN_FLIGHT}"),
        ("sys_journal", journal_exprs(d), "main.journal j"),
        ("state", _state_exprs(d), "main.state s"),
        ("sys_promise", _promise_exprs(d), _promises(d)),
        ("sys_inbox", inbox, "main.invocation i WHERE i.status = 'inboxed'"),
        ("sys_keyed_service_status", _KEYED_EXPRS, f"main.invocation i WHERE {_holds_lock(d)}"),
        (
            "sys_service",
            {c: f"s.{c}" for c, _ in COLUMNS["sys_service"]},
            "temp._durably_service s",
        ),
        (
            "durably_kafka_parked_record",
            {
                # quoted: `offset` is a reserved word in PostgreSQL
                **{c: f'k."{c}"' for c in ("id", "subscription_id", "topic", "partition",
                                           "offset", "key", "value", "error")},
                "key_utf8": "durably_utf8(k.key)",
                "value_utf8": "durably_utf8(k.value)",
                "timestamp": d.ts("k.timestamp"),
                "parked_at": d.ts("k.parked_at"),
            },
            "main.kafka_parked k",
        ),
        (
            "sys_deployment",
            {c: f"d.{c}" for c, _ in COLUMNS["sys_deployment"]},
            "temp._durably_deployment d",
        ),
    ]


def view_select(name: str, exprs: dict[str, str], source: str) -> str:
    """The SELECT of one view: every column of Restate's table, NULL where we keep nothing."""
    select = ", ".join(f"{exprs.get(col, 'NULL')} AS \"{col}\"" for col, _ in COLUMNS[name])
    return f"SELECT {select} FROM {source}"


# `main.` is a placeholder: each connection attaches the store under its own secret name
_VIEWS = [
    f"CREATE TEMP VIEW {name} AS {view_select(name, exprs, source)}"
    for name, exprs, source in view_definitions(SQLITE)
]


def _views(schema: str) -> list[str]:
    return [sql.replace("main.", f"{schema}.") for sql in _VIEWS]


_SCRATCH_TABLES = """
CREATE TEMP TABLE _durably_service (name, revision, public, ty, deployment_id);
CREATE TEMP TABLE _durably_deployment (id, ty, endpoint, created_at,
    min_service_protocol_version, max_service_protocol_version, services);
"""

# Output conversions by column name (SQLite keeps no types on expressions): Restate's
# booleans, u64 partition keys, and list columns.
_BOOL_NAMES = {
    name for cols in COLUMNS.values() for name, ty in cols if ty == B
} | {"pinned_deployment_exists"}
_LIST_NAMES = {name for cols in COLUMNS.values() for name, ty in cols if ty in (LS, LU)}
_U64_NAMES = {"partition_key"}


def column_type(table: str, column: str) -> str | None:
    for name, ty in COLUMNS.get(table, ()):
        if name == column:
            return ty
    return None


# -- user functions ---------------------------------------------------------------------


def _duration(ms: int | None) -> str | None:
    if ms is None:
        return None
    seconds, rem = divmod(int(ms), 1000)
    return f"PT{seconds}S" if rem == 0 else f"PT{seconds}.{rem:03d}S"


def _utf8(data: bytes | None) -> str | None:
    if data is None:
        return None
    return bytes(data).decode("utf-8", errors="replace")


def _result(data: bytes | None, what: str) -> Any:
    """Fields of an encoded completion result (see engine.model.Result.encode)."""
    if data is None:
        return None
    raw = bytes(data)
    success = raw[:1] == b"V"
    if what == "kind":
        return "success" if success else "failure"
    if what == "value":
        return raw[1:] if success else None
    if what == "utf8":
        return raw[1:].decode("utf-8", errors="replace") if success else None
    if what == "failure":
        if success:
            return None
        d = orjson.loads(raw[1:])
        return f"[{d['code']}] {d['message']}"
    return None


def _partition_key(key: str | None) -> int | None:
    if key is None:
        return None
    pk = partition_key_for(key=key)
    return pk - _U64 if pk > _I64_MAX else pk  # SQLite integers are signed


# -- refusal ----------------------------------------------------------------------------


class QueryRefused(Exception):
    """A statement that is not a plain read of the introspection tables."""


class QueryError(Exception):
    """SQL that SQLite could not run (syntax, unknown table or column, timeout)."""


# SQLite's authorizer action codes (sqlite3.h), for refusal messages.
_ACTION_NAMES = {
    1: "create index", 2: "create table", 3: "create temp index", 4: "create temp table",
    5: "create temp trigger", 6: "create temp view", 7: "create trigger", 8: "create view",
    9: "delete", 10: "drop index", 11: "drop table", 12: "drop temp index",
    13: "drop temp table", 14: "drop temp trigger", 15: "drop temp view", 16: "drop trigger",
    17: "drop view", 18: "insert", 19: "pragma", 22: "transaction", 23: "update",
    24: "attach", 25: "detach", 26: "alter table", 27: "reindex", 28: "analyze",
    29: "create virtual table", 30: "drop virtual table", 32: "savepoint",
}
_ALLOWED_FUNCTIONS_DENY = {"load_extension", "readfile", "writefile", "edit"}
_VIEW_NAMES = set(TABLES)
_STRIP_LITERALS = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.S)
# string literals and quoted identifiers (left alone), or the bare word `index`
_INDEX_WORD = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\bindex\b""", re.S | re.I)
_WRITE_VERBS = {
    "INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "CREATE", "DROP", "ALTER", "ATTACH",
    "DETACH", "PRAGMA", "VACUUM", "REINDEX", "ANALYZE", "BEGIN", "COMMIT", "END", "ROLLBACK",
    "SAVEPOINT", "RELEASE",
}


# DataFusion's ordered aggregate `FIRST_VALUE(x ORDER BY k [ASC|DESC])` (Restate's CLI
# uses it in `services status`); SQLite before 3.44 has no ORDER BY inside an aggregate
_FIRST_VALUE_ORDERED = re.compile(
    r"\b(first|last)_value\s*\(\s*([^()]+?)\s+ORDER\s+BY\s+([^()]+?)(?:\s+(ASC|DESC))?\s*\)", re.I
)


def _ordered_aggregates(sql: str) -> str:
    def rewrite(m: re.Match[str]) -> str:
        descending = (m.group(4) or "ASC").upper() == "DESC"
        if m.group(1).lower() == "last":
            descending = not descending
        return f"durably_first_by({m.group(2)}, {m.group(3)}, {int(descending)})"

    return _FIRST_VALUE_ORDERED.sub(rewrite, sql)


class _FirstBy:
    """Aggregate: the value whose ordering key is the smallest (or largest); NULL keys last."""

    def __init__(self) -> None:
        self.key: Any = None
        self.value: Any = None
        self.seen = False

    def step(self, value: Any, key: Any, descending: int) -> None:
        if key is None:
            if not self.seen:
                self.value, self.seen = value, True
            return
        if not self.seen or self.key is None or (key > self.key if descending else key < self.key):
            self.key, self.value, self.seen = key, value, True

    def finalize(self) -> Any:
        return self.value


class _FirstValue:
    """`first_value(x)` as SQLite's window function and also, as in DataFusion, as a plain
    aggregate (the group's first row); Restate's CLI uses it that way."""

    def __init__(self) -> None:
        self.values: deque[Any] = deque()

    def step(self, value: Any) -> None:
        self.values.append(value)

    def inverse(self, value: Any) -> None:
        self.values.popleft()

    def value(self) -> Any:
        return self.values[0] if self.values else None

    def finalize(self) -> Any:
        return self.value()


class _LastValue(_FirstValue):
    def value(self) -> Any:
        return self.values[-1] if self.values else None


def _quote_index(sql: str) -> str:
    """`index` is a column of sys_journal (and Restate's CLI writes `ORDER BY index`), but a
    reserved word to SQLite; in a read-only statement it can only be an identifier."""
    return _INDEX_WORD.sub(lambda m: '"index"' if m.group(0).lower() == "index" else m.group(0), sql)


# Restate's CLI counts with `SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT n)
# WHERE inv.target_service_name ...` (`invocations list --service`): DataFusion lets the
# inner alias name the unaliased derived table, SQLite does not; give it that alias
_UNALIASED_DERIVED = re.compile(
    r"\(\s*SELECT\s+\*\s+FROM\s+(\w+)\s+(?:AS\s+)?(?!(?:LIMIT|WHERE|ORDER|GROUP)\b)(\w+)"
    r"(\s[^()]*)?\)(?=\s*(?:WHERE|GROUP|ORDER|LIMIT|\)|;|$))",
    re.I,
)


def name_derived_by_inner_alias(sql: str) -> str:
    return _UNALIASED_DERIVED.sub(
        lambda m: f"(SELECT * FROM {m.group(1)} {m.group(2)}{m.group(3) or ''}) AS {m.group(2)}",
        sql,
    )


def _first_word(sql: str) -> str:
    text = _STRIP_LITERALS.sub(" ", sql).strip()
    return text.split(None, 1)[0].upper() if text else ""


class _Guard:
    """The authorizer: reads through the introspection views, and nothing else.

    `allowed` holds the (view, table, column) reads the views' own definitions make of the
    stored tables (and of the scratch tables behind sys_service and sys_deployment). SQLite
    names the innermost view (or CTE) a read happens for; a read outside that set is refused,
    whatever the SQL text looks like.
    """

    def __init__(self, allowed: frozenset[tuple[str, str, str]], schema: str) -> None:
        self.allowed = allowed
        self.viewed_tables = frozenset(table for _, table, _ in allowed)
        self.schema = schema
        self.reason: str | None = None

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        if action == sqlite3.SQLITE_SELECT or action == sqlite3.SQLITE_RECURSIVE:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            if arg2 and arg2.lower() in _ALLOWED_FUNCTIONS_DENY:
                return self._deny(f"the function {arg2}() is not allowed")
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            if db == "information_schema" or (db == "temp" and arg1 in _VIEW_NAMES):
                return sqlite3.SQLITE_OK
            if arg1 is not None and db in (self.schema, "temp"):
                if (source, arg1, arg2 or "") in self.allowed:
                    return sqlite3.SQLITE_OK
                if not arg2 and arg1 in self.viewed_tables:
                    # `count(*)` over a flattened view (or a join needing no column of it)
                    # reads the view's table without columns, and SQLite names no view then:
                    # a row count, of a table whose rows a view shows anyway
                    return sqlite3.SQLITE_OK
            return self._deny(
                f"'{arg1}' is not an introspection table; query one of: "
                + ", ".join(sorted(TABLES))
            )
        what = _ACTION_NAMES.get(action, f"action {action}")
        return self._deny(f"only SELECT queries are allowed (this statement does: {what})")

    def _deny(self, reason: str) -> int:
        if self.reason is None:
            self.reason = reason
        return sqlite3.SQLITE_DENY


def _record_view_reads(db: sqlite3.Connection, schema: str) -> frozenset[tuple[str, str, str]]:
    """The stored-table reads each view makes, as SQLite's authorizer reports them."""
    seen: set[tuple[str, str, str]] = set()

    def record(
        action: int, arg1: str | None, arg2: str | None, dbname: str | None, source: str | None
    ) -> int:
        if (
            action == sqlite3.SQLITE_READ
            and source in _VIEW_NAMES
            and arg1 is not None
            and dbname in (schema, "temp")
            and not (dbname == "temp" and arg1 in _VIEW_NAMES)
        ):
            seen.add((source, arg1, arg2 or ""))
        return sqlite3.SQLITE_OK

    db.set_authorizer(record)
    try:
        for view in TABLES:
            db.execute(f"SELECT * FROM {view} LIMIT 0").fetchall()
    finally:
        db.set_authorizer(None)
    return frozenset(seen)


# -- the query runner -------------------------------------------------------------------


@dataclass(slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False


class _Connection:
    def __init__(self, db_path: str, registry_rows: Callable[[bytes | None], Any]) -> None:
        # `main` is an empty in-memory database; the store is attached under a name nobody
        # can guess, so SQL naming durably's tables (`meta`, `main.journal`) finds nothing
        self.schema = "store_" + secrets.token_hex(12)
        self.db = sqlite3.connect(
            ":memory:", uri=True, check_same_thread=False, isolation_level=None
        )
        self.db.execute(
            f"ATTACH DATABASE ? AS {self.schema}", (Path(db_path).absolute().as_uri() + "?mode=ro",)
        )
        # SQLite looks unqualified names up in temp, main, then attached databases: empty
        # stand-ins in `main` catch those names before they reach the store
        for (table,) in self.db.execute(
            f"SELECT name FROM {self.schema}.sqlite_master WHERE type = 'table'"
        ).fetchall():
            if table not in _VIEW_NAMES and not table.startswith("sqlite_"):
                # same column names, so a query naming them is refused rather than misparsed
                cols = [
                    row[1]
                    for row in self.db.execute(f'PRAGMA {self.schema}.table_info("{table}")')
                ]
                col_list = ", ".join(f'"{c}"' for c in cols) or "unused"
                self.db.execute(f'CREATE TABLE main."{table}" ({col_list})')
        # one value (a string or blob, e.g. zeroblob(n), printf padding) may not grow beyond
        # this; journal entries are at most the ingress body limit (32 MiB) plus their envelope
        self.db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        for name, fn, n in (
            ("durably_journal", entry_field, 3),
            ("durably_duration", _duration, 1),
            ("durably_utf8", _utf8, 1),
            ("durably_result", _result, 2),
            ("durably_partition_key", _partition_key, 1),
        ):
            self.db.create_function(name, n, fn, deterministic=True)
        # typeshed describes an aggregate whose step takes one argument; this one takes three
        self.db.create_aggregate("durably_first_by", 3, _FirstBy)  # type: ignore[arg-type]
        self.db.create_window_function("first_value", 1, _FirstValue)
        self.db.create_window_function("last_value", 1, _LastValue)
        self.db.executescript(_SCRATCH_TABLES)
        for sql in _views(self.schema):
            self.db.execute(sql)
        self.db.execute("ATTACH DATABASE ':memory:' AS information_schema")
        self.db.execute(
            "CREATE TABLE information_schema.columns (table_catalog, table_schema, table_name, "
            "column_name, ordinal_position, data_type, is_nullable)"
        )
        self.db.executemany(
            "INSERT INTO information_schema.columns VALUES ('restate', 'public', ?, ?, ?, ?, ?)",
            [
                (t, c, i, ty, "NO" if (t, c) in _NOT_NULL else "YES")
                for t, cols in COLUMNS.items()
                for i, (c, ty) in enumerate(cols)
            ],
        )
        self.db.execute(
            "CREATE TABLE information_schema.tables (table_catalog, table_schema, table_name, "
            "table_type)"
        )
        self.db.executemany(
            "INSERT INTO information_schema.tables VALUES ('restate', 'public', ?, 'VIEW')",
            [(t,) for t in TABLES],
        )
        self.allowed = _record_view_reads(self.db, self.schema)
        self.registry_raw: bytes | None = b"\0"  # forces the first refresh
        self.registry_rows = registry_rows

    def refresh_registry(self) -> None:
        """Copy deployments and services from the stored registry document when it changed."""
        row = self.db.execute(
            f"SELECT value FROM {self.schema}.meta WHERE key = 'schema_registry'"
        ).fetchone()
        raw = None if row is None else bytes(row[0])
        if raw == self.registry_raw:
            return
        services, deployments = self.registry_rows(raw)
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM temp._durably_service")
        self.db.execute("DELETE FROM temp._durably_deployment")
        self.db.executemany("INSERT INTO temp._durably_service VALUES (?, ?, ?, ?, ?)", services)
        self.db.executemany(
            "INSERT INTO temp._durably_deployment VALUES (?, ?, ?, ?, ?, ?, ?)", deployments
        )
        self.db.execute("COMMIT")
        self.registry_raw = raw


_NOT_NULL = {("sys_invocation", "status")}


def registry_rows(raw: bytes | None) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(services, deployments) rows for the views, from the stored registry document."""
    if raw is None:
        return [], []
    from durably.schema.registry import SchemaRegistry

    doc = orjson.loads(raw)
    reg = SchemaRegistry(lambda: doc, lambda _doc: None)
    services = [
        (s.name, s.revision, int(bool(s.public)), s.ty, s.deployment_id)
        for s in reg.list_services()
    ]
    deployments = [
        (
            d.id,
            "http",
            d.uri,
            _iso_ms(d.created_at_ms),
            d.min_protocol_version,
            d.max_protocol_version,
            orjson.dumps(list(d.service_names)).decode(),
        )
        for d in reg.list_deployments()
    ]
    return services, deployments


def _iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class Introspector:
    """Runs introspection queries (blocking: call it from a worker thread)."""

    def __init__(
        self,
        db_path: str,
        *,
        max_rows: int = 100_000,
        timeout_s: float = 30.0,
        max_answer_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.db_path = db_path
        self.max_rows = max_rows
        self.max_answer_bytes = max_answer_bytes
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def _take(self) -> _Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Connection(self.db_path, registry_rows)

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < 4:
                self._idle.append(conn)
                return
        conn.db.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.db.close()

    def ui_counts(self) -> list[tuple[str, str, str, str, int]] | None:
        """(service, handler, pinned deployment or '', UI status, invocations) from the
        table the store keeps (ui_count_ddl); None when the store keeps none."""
        try:
            conn = self._take()
        except sqlite3.Error as e:
            raise QueryError(f"cannot open the database for reading: {e}") from None
        try:
            rows = conn.db.execute(
                f"SELECT service, handler, deployment, status, n "
                f"FROM {conn.schema}.invocation_ui_count WHERE n > 0"
            ).fetchall()
        except sqlite3.Error:
            conn.db.close()
            return None
        self._give_back(conn)
        return [(str(s), str(h), str(d), str(st), int(n)) for s, h, d, st, n in rows]

    def query(self, sql: str) -> QueryResult:
        verb = _first_word(sql)
        if verb in _WRITE_VERBS:
            raise QueryRefused(f"only SELECT queries are allowed (this statement is a {verb})")
        sql = name_derived_by_inner_alias(_ordered_aggregates(_quote_index(sql)))
        try:
            conn = self._take()
        except sqlite3.Error as e:
            raise QueryError(f"cannot open the database for reading: {e}") from None
        ok = False
        try:
            result = self._run(conn, sql)
            ok = True
            return result
        finally:
            if ok:
                self._give_back(conn)
            else:
                conn.db.close()

    def _run(self, conn: _Connection, sql: str) -> QueryResult:
        db = conn.db
        try:
            conn.refresh_registry()
        except sqlite3.Error as e:
            raise QueryError(f"cannot read the registry: {e}") from None
        guard = _Guard(conn.allowed, conn.schema)
        deadline = time.monotonic() + self.timeout_s
        timed_out = False

        def progress() -> int:
            nonlocal timed_out
            if time.monotonic() > deadline:
                timed_out = True
                return 1
            return 0

        db.execute("BEGIN")  # one snapshot for the whole query
        db.set_authorizer(guard)
        db.set_progress_handler(progress, 10_000)
        try:
            cur = db.execute(sql)
            columns = [d[0] for d in cur.description or ()]
            rows = self._fetch(cur)
        except sqlite3.Warning as e:  # e.g. several statements
            raise QueryError(str(e)) from None
        except sqlite3.Error as e:
            if guard.reason is not None:
                raise QueryRefused(guard.reason) from None
            if str(e).startswith("cannot modify"):
                raise QueryRefused(f"only SELECT queries are allowed ({e})") from None
            if timed_out:
                raise QueryError(
                    f"the query ran longer than {self.timeout_s:g}s and was interrupted"
                ) from None
            if "too big" in str(e):
                raise QueryError(
                    f"a value of the query exceeds the limit of {MAX_VALUE_BYTES} bytes"
                ) from None
            raise QueryError(str(e)) from None
        finally:
            db.set_authorizer(None)
            db.set_progress_handler(None, 0)
            if db.in_transaction:
                db.execute("ROLLBACK")
        truncated = len(rows) > self.max_rows
        return QueryResult(columns, rows[: self.max_rows], truncated)

    def _fetch(self, cur: sqlite3.Cursor) -> list[tuple[Any, ...]]:
        """Up to max_rows + 1 rows, refusing an answer larger than the byte budget (the
        answer is built in memory, and a few rows of large values multiply quickly)."""
        rows: list[tuple[Any, ...]] = []
        size = 0
        for row in cur:
            size += _row_bytes(row)
            if size > self.max_answer_bytes:
                raise QueryError(
                    f"the answer exceeds the limit of {self.max_answer_bytes} bytes; select "
                    "fewer rows (LIMIT) or smaller columns"
                )
            rows.append(row)
            if len(rows) > self.max_rows:
                break
        return rows


def _row_bytes(row: tuple[Any, ...]) -> int:
    # blobs are rendered as hex (twice their size), everything else about as stored
    size = 0
    for value in row:
        if isinstance(value, bytes):
            size += 2 * len(value)
        elif isinstance(value, str):
            size += len(value)
        else:
            size += 8
    return size


# -- rendering --------------------------------------------------------------------------


def render_value(column: str, value: Any) -> Any:
    """A SQLite value -> what Restate's JSON output prints for that column."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, int):
        if column in _BOOL_NAMES and value in (0, 1):
            return bool(value)
        if value < 0 and column in _U64_NAMES:
            return value + _U64
        return value
    if isinstance(value, str) and column in _LIST_NAMES and value.startswith("["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def rows_as_json(result: QueryResult) -> list[dict[str, Any]]:
    """Row objects as Restate prints them: NULL columns are left out."""
    cols: Sequence[str] = result.columns
    out = []
    for row in result.rows:
        obj: dict[str, Any] = {}
        for name, value in zip(cols, row, strict=True):
            if value is not None:
                obj[name] = render_value(name, value)
        out.append(obj)
    return out
