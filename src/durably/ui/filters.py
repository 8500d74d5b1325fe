"""The invocation list's view as a URL: filters, sort, columns and page -> SQL over
`sys_invocation`, and back to a query string.

Everything here is pure (no I/O), so it is tested with plain strings. The SQL it writes only
names `sys_invocation` and its columns, so it runs on any store that serves Restate's
introspection tables. Values are written as quoted SQL literals; the free condition is the
user's own SQL, run (like `POST /query`) on a read-only connection that refuses anything but
reads of the introspection tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from durably.storage.introspection import UI_STATUS, UI_STATUSES

__all__ = [
    "COLUMNS",
    "STATUS_FILTERS",
    "STATUS_SETS",
    "ListView",
    "display_status",
    "sql_literal",
]

# status filter name -> SQL condition over sys_invocation (one click each)
# the engine writes "canceled"; an SDK whose awaited call was cancelled writes its own word
_CANCELED = "'[409] canceled', '[409] cancelled'"
_KILLED = "'[409] killed'"
STATUS_FILTERS: dict[str, str] = {
    "running": "status = 'running'",
    "in-flight": "status IN ('running', 'backing-off')",
    "suspended": "status = 'suspended'",
    "backing-off": "status = 'backing-off'",
    "paused": "status = 'paused'",
    "pending": "status = 'pending'",
    "scheduled": "status = 'scheduled'",
    "not-completed": "status <> 'completed'",
    "completed": "status = 'completed'",
    "succeeded": "status = 'completed' AND completion_result = 'success'",
    "failed": (
        f"status = 'completed' AND completion_result = 'failure' "
        f"AND completion_failure NOT IN ({_CANCELED}, {_KILLED})"
    ),
    "cancelled": f"status = 'completed' AND completion_failure IN ({_CANCELED})",
    "killed": f"status = 'completed' AND completion_failure = {_KILLED}",
}
# The same filters as sets of the UI's statuses (storage.introspection.UI_STATUS, one indexed
# expression): what the list's SQL uses, so that every status filter is a range of one index
STATUS_SETS: dict[str, tuple[str, ...]] = {
    "running": ("running",),
    "in-flight": ("running", "backing-off"),
    "suspended": ("suspended",),
    "backing-off": ("backing-off",),
    "paused": ("paused",),
    "pending": ("pending",),
    "scheduled": ("scheduled",),
    "not-completed": ("pending", "scheduled", "running", "suspended", "backing-off", "paused"),
    "completed": ("succeeded", "failed", "cancelled", "killed"),
    "succeeded": ("succeeded",),
    "failed": ("failed",),
    "cancelled": ("cancelled",),
    "killed": ("killed",),
}
# the one-click row above the list, in the order shown
QUICK_STATUSES = (
    "running", "in-flight", "suspended", "backing-off", "paused", "scheduled", "pending",
    "completed", "succeeded", "failed", "cancelled", "killed",
)
# text filters: URL parameter -> sys_invocation column
TEXT_FILTERS: dict[str, str] = {
    "service": "target_service_name",
    "handler": "target_handler_name",
    "key": "target_service_key",
    "invoked_by": "invoked_by_id",
    "deployment": "pinned_deployment_id",
    "idempotency_key": "idempotency_key",
    "id": "id",
}
# the text filters the store's counts are kept by: name -> place in a counts row
COUNTED_FILTERS = {"service": 0, "handler": 1, "deployment": 2}
# columns one can show: name -> heading
COLUMNS: dict[str, str] = {
    "id": "Invocation",
    "target": "Target",
    "status": "Status",
    "created_at": "Created",
    "modified_at": "Modified",
    "completed_at": "Completed",
    "journal_size": "Journal",
    "retry_count": "Attempts",
    "invoked_by_id": "Invoked by",
    "pinned_deployment_id": "Deployment",
    "idempotency_key": "Idempotency key",
    "last_failure": "Last failure",
}
DEFAULT_COLUMNS = ("id", "target", "status", "created_at", "modified_at", "journal_size")
# Sortable columns are never NULL, so a (value, id) pair orders every row and can be the
# keyset cursor. Both are indexed (storage.introspection's list indexes).
SORTS = ("created_at", "modified_at")
PAGE_SIZES = (20, 50, 100, 200)
# from this many matching rows on, a page walks the sort column's index (see page_sql);
# below, SQLite sorts at most this many rows of a filter's index
SCAN_ABOVE = 20_000
# what the row query fetches besides the chosen columns (status display, actions)
_ALWAYS = ("id", "status", "completion_result", "completion_failure", "target",
           "target_service_ty")


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def display_status(status: str | None, result: str | None, failure: str | None) -> str:
    """Restate's UI statuses: a completed invocation shows how it ended."""
    if status != "completed":
        return status or "unknown"
    if result == "success":
        return "succeeded"
    if failure in ("[409] canceled", "[409] cancelled"):
        return "cancelled"
    if failure == "[409] killed":
        return "killed"
    return "failed"


@dataclass
class ListView:
    statuses: list[str] = field(default_factory=list)
    text: dict[str, str] = field(default_factory=dict)
    created_after: str = ""
    created_before: str = ""
    where: str = ""
    sort: str = "created_at"
    order: str = "desc"
    columns: list[str] = field(default_factory=lambda: list(DEFAULT_COLUMNS))
    limit: int = 50
    after: str = ""  # keyset cursor: "<sort value>|<id>" of the last row shown
    before: str = ""  # the same, paging backwards
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> ListView:
        """From a query string's parameters (Starlette's QueryParams: repeated parameters
        through its `getlist`; a plain mapping gives one value each)."""
        get = q.get
        getlist = getattr(q, "getlist", lambda name: [v for v in [get(name)] if v])
        view = cls()
        for s in getlist("status"):
            for part in s.split(","):
                part = part.strip()
                if part in STATUS_FILTERS and part not in view.statuses:
                    view.statuses.append(part)
                elif part:
                    view.errors.append(f"unknown status filter '{part}'")
        for name in TEXT_FILTERS:
            value = (get(name) or "").strip()
            if value:
                view.text[name] = value
        view.created_after = (get("created_after") or "").strip()
        view.created_before = (get("created_before") or "").strip()
        view.where = (get("where") or "").strip()
        sort = get("sort") or "created_at"
        view.sort = sort if sort in SORTS else "created_at"
        view.order = "asc" if get("order") == "asc" else "desc"
        cols = [c for c in getlist("column") if c in COLUMNS]
        if cols:
            view.columns = cols
        try:
            limit = int(get("limit") or 50)
        except ValueError:
            limit = 50
        view.limit = limit if limit in PAGE_SIZES else 50
        view.after = get("after") or ""
        view.before = get("before") or ""
        return view

    # -- back to a URL --------------------------------------------------------------------

    def params(self, *, paging: bool = True, **override: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = [("status", s) for s in self.statuses]
        out += [(k, v) for k, v in self.text.items()]
        if self.created_after:
            out.append(("created_after", self.created_after))
        if self.created_before:
            out.append(("created_before", self.created_before))
        if self.where:
            out.append(("where", self.where))
        if self.sort != "created_at":
            out.append(("sort", self.sort))
        if self.order != "desc":
            out.append(("order", self.order))
        if self.columns != list(DEFAULT_COLUMNS):
            out += [("column", c) for c in self.columns]
        if self.limit != 50:
            out.append(("limit", str(self.limit)))
        if paging:
            if self.after:
                out.append(("after", self.after))
            if self.before:
                out.append(("before", self.before))
        drop = set(override)
        out = [(k, v) for k, v in out if k not in drop]
        out += [(k, v) for k, v in override.items() if v]
        return out

    def query_string(self, *, paging: bool = True, **override: str) -> str:
        return urlencode(self.params(paging=paging, **override))

    # -- SQL --------------------------------------------------------------------------------

    def ui_statuses(self) -> tuple[str, ...] | None:
        """The UI statuses the status filters select (None: no status filter, or all)."""
        if not self.statuses:
            return None
        chosen = {v for s in self.statuses for v in STATUS_SETS[s]}
        return None if chosen >= set(UI_STATUSES) else tuple(
            v for v in UI_STATUSES if v in chosen)

    def total_from_counts(
        self, counts: Iterable[tuple[str, str, str, str, int]]
    ) -> int | None:
        """The exact total from the (service, handler, pinned deployment or '', UI status,
        invocations) counts the store keeps, when the filter is on those only (None
        otherwise: the total needs a count query)."""
        if set(self.text) - set(COUNTED_FILTERS) or (
                self.created_after or self.created_before or self.where):
            return None
        chosen = self.ui_statuses()
        want = [(COUNTED_FILTERS[name], value) for name, value in self.text.items()]
        return sum(
            row[-1] for row in counts
            if (chosen is None or row[3] in chosen)
            and all(row[at] == value for at, value in want)
        )

    def condition(self, *, fast: bool = True, status: bool = True, scan: bool = False) -> str:
        """The filter as one SQL condition (no paging): `1 = 1` when nothing is set.

        `fast`: the status filters as the indexed UI_STATUS expression; without, as
        STATUS_FILTERS spells them (the same rows: the tests compare both). `status=False`
        leaves them out (page_sql adds them per branch). `scan`: the equality filters
        marked unusable for an index (SQLite's unary `+`), see page_sql."""
        parts: list[str] = []
        plus = "+" if scan else ""
        if self.statuses and status:
            chosen = self.ui_statuses()
            if not fast:
                parts.append(
                    "(" + " OR ".join(f"({STATUS_FILTERS[s]})" for s in self.statuses) + ")")
            elif chosen is not None:
                parts.append(plus + _ui_status_in(chosen))
        for name, value in self.text.items():
            parts.append(f"{plus}{TEXT_FILTERS[name]} = {sql_literal(value)}")
        # a range of creation times bounds the walk when the page is in creation order
        plus = "+" if scan and self.sort != "created_at" else ""
        if self.created_after:
            parts.append(
                f"{plus}created_at >= {sql_literal(_as_timestamp(self.created_after))}")
        if self.created_before:
            parts.append(
                f"{plus}created_at < {sql_literal(_as_timestamp(self.created_before))}")
        if self.where:
            parts.append(f"({self.where})")
        return " AND ".join(parts) if parts else "1 = 1"

    def count_sql(self, *, fast: bool = True) -> str:
        return f"SELECT count(*) AS n FROM sys_invocation WHERE {self.condition(fast=fast)}"

    def page_sql(self, *, fast: bool = True, total: int | None = None) -> str:
        """One page (limit + 1 rows, to know whether there is a next one).

        Several UI statuses become one branch each (UNION ALL, each a range of the status
        index in the page's order, cut at the page's size): SQLite reads a multi-value IN
        in index order per value, so it would otherwise sort every matching row.

        `total`, the filter's count when known: when it is large, the page walks the sort
        column's index and checks the filters row by row (a page is found within about
        limit x rows / total rows), instead of letting SQLite take a filter's index and sort
        every matching row, which it does whenever that index is not in the page's order."""
        cols = ", ".join(dict.fromkeys([*_ALWAYS, self.sort, *self.columns]))
        backwards = bool(self.before) and not self.after
        descending = (self.order == "desc") != backwards
        cursor = self.after or self.before
        paging = ""
        if cursor and "|" in cursor:
            value, inv_id = cursor.rsplit("|", 1)
            op = "<" if descending else ">"
            v = sql_literal(value)
            # the first term alone bounds a range of the sort column's index
            paging = (f" AND {self.sort} {op}= {v} AND ({self.sort} {op} {v} "
                      f"OR id {op} {sql_literal(inv_id)})")
        direction = "DESC" if descending else "ASC"
        order = f"ORDER BY {self.sort} {direction}, id {direction} LIMIT {self.limit + 1}"
        chosen = self.ui_statuses() if fast else None
        scan = fast and total is not None and total > SCAN_ABOVE and not self.where
        if scan or chosen is None or len(chosen) == 1:
            return (f"SELECT {cols} FROM sys_invocation "
                    f"WHERE {self.condition(fast=fast, scan=scan)}{paging} {order}")
        rest = self.condition(status=False)
        branches = " UNION ALL ".join(
            f"SELECT * FROM (SELECT {cols} FROM sys_invocation WHERE "
            f"{_ui_status_in((v,))} AND {rest}{paging} {order})"
            for v in chosen
        )
        return f"SELECT * FROM ({branches}) {order}"

    @property
    def backwards(self) -> bool:
        return bool(self.before) and not self.after


def _ui_status_in(values: tuple[str, ...]) -> str:
    if len(values) == 1:
        return f"{UI_STATUS} = {sql_literal(values[0])}"
    return f"{UI_STATUS} IN ({', '.join(sql_literal(v) for v in values)})"


def _as_timestamp(value: str) -> str:
    """`2026-11-29T18:00` (what a datetime-local input sends) -> RFC 3339 as the views print
    timestamps, so text comparison orders them as times."""
    v = value.strip().replace(" ", "T")
    if v.endswith("Z"):
        v = v[:-1]
    if len(v) == 10:
        v += "T00:00"
    if len(v) == 16:
        v += ":00"
    if len(v) == 19:
        v += ".000"
    return v + "Z"
