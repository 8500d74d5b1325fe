"""The web UI's routes, mounted on the admin app under `/ui/`.

Reads go through the same introspection machinery as `POST /query` (SQL over Restate's
`sys_*` tables, on a read-only connection, in a worker thread); the deployment and service
registry is read as the admin API reads it; actions call the functions behind the admin
API's routes, so a page and the API always give the same answer.

Every link is relative (the UI works behind a path prefix); pages are at most one level below
`/ui/`, so a page's links start with "" or "../". State-changing requests are POSTs that must
come from the UI's own origin, and every page carries a Content-Security-Policy that only lets
the UI's own script and stylesheet run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import jinja2
import orjson
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from durably.admin.app import _PlainError, parse_modify_service
from durably.admin.invocations import invocation_view, perform
from durably.admin.render import service_json
from durably.admin.services import modify_state, service_openapi
from durably.engine.engine import ATTEMPTS_KEPT
from durably.schema.errors import AdminError
from durably.storage.introspection import (
    UI_STATUS,
    Introspector,
    QueryError,
    QueryRefused,
    render_value,
)
from durably.ui import present
from durably.ui.filters import (
    COLUMNS,
    COUNTED_FILTERS,
    PAGE_SIZES,
    QUICK_STATUSES,
    SORTS,
    STATUS_FILTERS,
    STATUS_SETS,
    TEXT_FILTERS,
    ListView,
    display_status,
    sql_literal,
)
from durably.ui.routing import ORIGIN_HOST

if TYPE_CHECKING:
    from durably.engine.engine import Engine
    from durably.schema.registry import SchemaRegistry, Service

__all__ = ["Act", "ui_routes"]

# (the request's ASGI scope, invocation id, admin action, its query parameters) -> the
# admin API's answer
Act = Callable[[Any, str, str, dict[str, str]], Awaitable[Response]]

_HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
FILTER_COOKIE = "durably_ui_last_filter"
BULK_CHUNK = 200
EXAMPLE_QUERIES = [
    ("Invocations by status",
     "SELECT status, count(*) AS n FROM sys_invocation GROUP BY status ORDER BY n DESC"),
    ("Failing and retrying",
     "SELECT id, target, retry_count, last_failure FROM sys_invocation "
     "WHERE status = 'backing-off' ORDER BY modified_at DESC LIMIT 50"),
    ("Suspended the longest",
     "SELECT id, target, modified_at FROM sys_invocation WHERE status = 'suspended' "
     "ORDER BY modified_at LIMIT 50"),
    ("Who holds a key's lock",
     "SELECT service_name, service_key, invocation_id FROM sys_keyed_service_status"),
    ("Inboxes", "SELECT service_name, service_key, count(*) AS waiting FROM sys_inbox "
     "GROUP BY service_name, service_key ORDER BY waiting DESC"),
    ("State of virtual objects",
     "SELECT service_name, service_key, key, value_utf8 FROM state LIMIT 100"),
    ("Workflow promises", "SELECT * FROM sys_promise LIMIT 100"),
    ("Journal of one invocation",
     "SELECT index, entry_type, name, appended_at FROM sys_journal WHERE id = 'inv_...' "
     "ORDER BY index"),
]


class UIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["human_ms"] = present.human_ms
    env.filters["ts_ms"] = present.ts_ms
    env.filters["iso_duration"] = present.iso_duration
    env.filters["when"] = _when
    env.filters["when_full"] = lambda v: _when(v, full=True)
    env.globals.update(
        ACTION_LABELS=present.ACTION_LABELS,
        ACTION_HELP=present.ACTION_HELP,
        OPTION_FIELDS=present.OPTION_FIELDS,
        OPTION_HELP=present.OPTION_HELP,
        COLUMNS=COLUMNS,
        QUICK_STATUSES=QUICK_STATUSES,
        STATUS_FILTERS=STATUS_FILTERS,
        TEXT_FILTERS=TEXT_FILTERS,
        SORTS=SORTS,
        PAGE_SIZES=PAGE_SIZES,
        urlencode=urlencode,
    )
    return env


def same_origin(request: Request) -> bool:
    """A browser's cross-site POST carries `Sec-Fetch-Site: cross-site` (or an Origin that is
    not ours): refuse those. Requests without either header are not from a browser page,
    so they cannot be forged by one."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is not None:
        if origin == "null":
            return False
        # a request forwarded by another node of a cluster: the host the browser talked to
        host = request.headers.get(ORIGIN_HOST) or request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            return False
    return True


def ui_routes(
    engine: Engine,
    registry: SchemaRegistry,
    introspector: Introspector,
    *,
    read_only: bool = False,
    ingress_url: str | None = None,
    live_interval_s: float = 2.0,
    act: Act | None = None,
) -> list[BaseRoute]:
    """`/` and `/ui` redirect to `/ui/`; `/ui/...` is the UI.

    `act` performs an admin action on an invocation; by default on this engine (which
    runs every partition). A cluster that spreads partitions over nodes gives one that
    sends it to the invocation's owner (a bulk action's ids are on several nodes)."""
    env = _environment()

    async def act_here(scope: Any, inv_id: str, action: str, params: dict[str, str]
                       ) -> Response:
        return await perform(engine, inv_id, action, params)

    perform_action: Act = act or act_here
    gate = asyncio.Semaphore(2)

    # -- reading ---------------------------------------------------------------------------

    async def sql(query: str) -> list[dict[str, Any]]:
        async with gate:
            try:
                result = await asyncio.to_thread(introspector.query, query)
            except QueryRefused as e:
                raise UIError(400, f"Query refused: {e}") from None
            except QueryError as e:
                raise UIError(400, f"SQL error: {e}") from None
        return [
            {c: render_value(c, v) if not isinstance(v, bytes) else v
             for c, v in zip(result.columns, row, strict=True)}
            for row in result.rows
        ]

    async def sql_raw(query: str) -> tuple[list[str], list[list[Any]], bool, float]:
        t0 = time.perf_counter()
        async with gate:
            result = await asyncio.to_thread(introspector.query, query)
        elapsed = (time.perf_counter() - t0) * 1000
        rows = [[render_value(c, v) for c, v in zip(result.columns, row, strict=True)]
                for row in result.rows]
        return result.columns, rows, result.truncated, elapsed

    async def kept_counts() -> list[tuple[str, str, str, str, int]]:
        """Invocations per (service, handler, pinned deployment, UI status): the counts the
        store keeps, else one GROUP BY (a store that keeps none)."""
        kept = getattr(introspector, "ui_counts", None)
        if kept is not None:
            async with gate:
                counts: list[tuple[str, str, str, str, int]] | None = await asyncio.to_thread(
                    kept)
            if counts is not None:
                return counts
        return [(str(r["s"]), str(r["h"]), str(r["d"] or ""), str(r["u"]), int(r["n"]))
                for r in await sql(
                    "SELECT target_service_name AS s, target_handler_name AS h, "
                    f"pinned_deployment_id AS d, {UI_STATUS} AS u, count(*) AS n "
                    "FROM sys_invocation GROUP BY 1, 2, 3, 4")]

    def page(request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
        # the path below /ui (the mount's root_path), whatever prefix is in front of it
        path = request.scope["path"][len(request.scope.get("root_path", "")):] or "/"
        depth = 1 if path.rstrip("/").count("/") >= 2 else 0
        ctx.setdefault("title", "durably")
        html = env.get_template(template).render(
            base="../" * depth,
            read_only=read_only,
            live_interval_ms=int(live_interval_s * 1000),
            nav=ctx.pop("nav", ""),
            **ctx,
        )
        return Response(html, status_code=status, media_type="text/html; charset=utf-8",
                        headers=_SECURITY_HEADERS)

    def guard(request: Request) -> None:
        if read_only:
            raise UIError(403, "This UI is read-only (durably serve --ui-read-only).")
        if not same_origin(request):
            raise UIError(403, "Refused: the request did not come from this UI's own pages.")

    async def form(request: Request) -> FormData:
        # the pages' forms are urlencoded (no uploads): parsed here, without a multipart
        # dependency
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in ("application/x-www-form-urlencoded", ""):
            raise UIError(415, "Expected a form (application/x-www-form-urlencoded).")
        body = (await request.body()).decode("utf-8", errors="replace")
        fields: list[tuple[str, str | UploadFile]] = list(parse_qsl(body, keep_blank_values=True))
        return FormData(fields)

    # -- overview --------------------------------------------------------------------------

    async def overview(request: Request) -> Response:
        counts: dict[str, int] = {}
        for _, _, _, status, n in await kept_counts():
            counts[status] = counts.get(status, 0) + n
        total = sum(counts.values())
        counts["completed"] = sum(counts.get(s, 0) for s in STATUS_SETS["completed"])
        split = True
        services = [service_json(s) for s in registry.list_services()]
        deployments = registry.list_deployments()
        return page(request, "overview.html", nav="overview", title="Overview · durably",
                    counts=counts, total=total, split=split,
                    services=services,
                    deployments=deployments, message=request.query_params.get("message"),
                    error=request.query_params.get("error"))

    async def register_deployment(request: Request) -> Response:
        guard(request)
        f = await form(request)
        uri = str(f.get("uri", "")).strip()
        headers: dict[str, str] = {}
        for line in str(f.get("headers", "")).splitlines():
            if line.strip():
                name, sep, value = line.partition(":")
                if not sep or not name.strip():
                    return _redirect("./?" + urlencode(
                        {"error": f"A header line must read 'name: value', not '{line}'"}))
                headers[name.strip()] = value.strip()
        try:
            from durably.schema.discovery_client import normalize_uri

            normalize_uri(uri)
            deployment, services, created = await registry.register(
                uri, use_http_11=bool(f.get("use_http_11")), additional_headers=headers or None,
                force=bool(f.get("force")), breaking=bool(f.get("force")), dry_run=False)
        except AdminError as e:
            return _redirect("./?" + urlencode({"error": e.message}))
        names = ", ".join(s.name for s in services)
        verb = "Registered" if created else "Already registered"
        return _redirect("./?" + urlencode({"message": f"{verb} {deployment.id}: {names}"}))

    async def remove_deployment(request: Request) -> Response:
        guard(request)
        dep_id = request.path_params["deployment"]
        f = await form(request)
        if f.get("confirm") != "yes":
            d = registry.get_deployment(dep_id)
            return page(request, "confirm.html", title="Remove deployment · durably",
                        heading=f"Remove deployment {d.id}?",
                        text=f"{d.uri} serves {', '.join(d.service_names)}. Invocations "
                        "pinned to it cannot go on once it is removed.",
                        action_label="Remove", back="../")
        try:
            registry.remove_deployment(dep_id, force=True)
        except AdminError as e:
            return _redirect("../?" + urlencode({"error": e.message}))
        return _redirect("../?" + urlencode({"message": f"Removed deployment {dep_id}"}))

    # -- invocations list ------------------------------------------------------------------

    async def invocations(request: Request) -> Response:
        if request.query_params.get("last") == "1":
            saved = request.cookies.get(FILTER_COOKIE, "")
            return _redirect("invocations" + (f"?{saved}" if saved else ""))
        view = ListView.from_query(request.query_params)
        error = "; ".join(view.errors) or None
        rows: list[dict[str, Any]] = []
        total: int | None = None
        has_more = False
        if error is None:
            try:
                # the count first: the page's query shape depends on it (see page_sql)
                total = view.total_from_counts(await kept_counts()) if (
                    set(view.text) <= set(COUNTED_FILTERS) and not view.where) else None
                if total is None:
                    total_rows = await sql(view.count_sql())
                    total = int(total_rows[0]["n"]) if total_rows else 0
                rows = await sql(view.page_sql(total=total))
            except UIError as e:
                error = e.message
        has_more = len(rows) > view.limit
        rows = rows[: view.limit]
        if view.backwards:
            rows.reverse()
        for r in rows:
            r["display_status"] = display_status(
                r.get("status"), r.get("completion_result"), r.get("completion_failure"))
        first = f"{rows[0][view.sort]}|{rows[0]['id']}" if rows else ""
        last = f"{rows[-1][view.sort]}|{rows[-1]['id']}" if rows else ""
        paged = bool(view.after or view.before)
        next_qs = (view.query_string(paging=False, after=last)
                   if rows and (has_more if not view.backwards else paged) else None)
        prev_qs = (view.query_string(paging=False, before=first)
                   if rows and (paged if not view.backwards else has_more) else None)
        response = page(
            request, "invocations.html", status=400 if error else 200, nav="invocations",
            title="Invocations · durably", view=view, rows=rows, total=total, error=error,
            next_qs=next_qs, prev_qs=prev_qs, this_qs=view.query_string(),
            filter_qs=view.query_string(paging=False),
            services=sorted(s.name for s in registry.list_services()),
            message=request.query_params.get("message"))
        if error is None:
            response.set_cookie(FILTER_COOKIE, view.query_string(paging=False),
                                max_age=365 * 86400, samesite="strict", httponly=True,
                                path=_cookie_path(request))
        return response

    # -- one invocation --------------------------------------------------------------------

    async def invocation(request: Request) -> Response:
        inv_id = request.path_params["invocation_id"]
        literal = sql_literal(inv_id)
        rows, journal = await asyncio.gather(
            sql(f"SELECT * FROM sys_invocation WHERE id = {literal}"),
            sql("SELECT index, entry_type, name, entry_json, appended_at, invoked_id, "
                "invoked_target, sleep_wakeup_at, completed FROM sys_journal "
                f"WHERE id = {literal} ORDER BY index"),
        )
        if not rows:
            raise UIError(404, f"The invocation '{inv_id}' was not found.")
        inv = rows[0]
        status = display_status(inv.get("status"), inv.get("completion_result"),
                                inv.get("completion_failure"))
        entries = [present.decode_entry(r, inv.get("created_at")) for r in journal]
        called = [e.invoked_id for e in entries if e.invoked_id]
        children: list[dict[str, Any]] = []
        if called:
            ids = ", ".join(sql_literal(i) for i in dict.fromkeys(called))
            children = await sql(
                "SELECT id, target, status, completion_result, completion_failure "
                f"FROM sys_invocation WHERE id IN ({ids})")
            for c in children:
                c["display_status"] = display_status(
                    c.get("status"), c.get("completion_result"), c.get("completion_failure"))
        child_status = {c["id"]: c["display_status"] for c in children}
        parent: dict[str, Any] | None = None
        if inv.get("invoked_by_id"):
            found = await sql("SELECT id, target, status, completion_result, "
                              "completion_failure FROM sys_invocation "
                              f"WHERE id = {sql_literal(inv['invoked_by_id'])}")
            if found:
                parent = found[0]
                parent["display_status"] = display_status(
                    parent.get("status"), parent.get("completion_result"),
                    parent.get("completion_failure"))
        live_row = engine.lookup(inv_id)
        engine_view = invocation_view(engine, live_row) if live_row is not None else {}
        failure_detail: dict[str, Any] = {}
        if live_row is not None:
            stored = live_row.extra.get("failure_detail")
            if isinstance(stored, dict) and stored.get("message") == live_row.last_failure:
                failure_detail = stored
        failed_entry = present.command_entry(entries, failure_detail.get("related_command_index"))
        deadlock = list(engine.deadlocks.get(inv_id) or [])
        deadlock_text = engine_view.get("deadlock")
        request_entry = next((e for e in entries if e.type == "Input"), None)
        output = None
        if inv.get("status") == "completed":
            output = next((e for e in reversed(entries) if e.type == "Output"), None)
        workflow = inv.get("target_service_ty") == "workflow"
        actions = [] if read_only else present.actions_for(
            status, journal_kept=bool(entries), workflow=workflow)
        completed = status in ("succeeded", "failed", "cancelled", "killed")
        attempts = live_row.extra.get("attempts") if live_row is not None else None
        tl = present.timeline(inv, entries, int(time.time() * 1000), attempts)
        retained_until = present.retained_until(inv)
        return page(
            request, "invocation.html", nav="invocations", title=f"{inv_id} · durably",
            inv=inv, shown_status=status, entries=entries, request_entry=request_entry, tl=tl,
            retained_until=retained_until,
            output=output, children=children, child_status=child_status, parent=parent,
            deadlock=deadlock, deadlock_text=deadlock_text, actions=actions,
            stacktrace=failure_detail.get("stacktrace"), failed_entry=failed_entry, live=not completed,
            attempts=present.failed_attempts(live_row.extra) if live_row is not None else [],
            attempts_kept=ATTEMPTS_KEPT,
            message=request.query_params.get("message"),
            error=request.query_params.get("error"),
            last_entry=entries[-1].index if entries else None)

    async def invocation_action(request: Request) -> Response:
        guard(request)
        inv_id = request.path_params["invocation_id"]
        f = await form(request)
        action = str(f.get("action", ""))
        if action not in present.ACTION_LABELS:
            raise UIError(400, f"Unknown action '{action}'.")
        params: dict[str, str] = {}
        from_entry = str(f.get("from", "")).strip()
        if action == "restart-as-new" and from_entry:
            params["from"] = from_entry
        if f.get("confirm") != "yes":
            return page(request, "confirm.html", title="Confirm · durably",
                        heading=f"{present.ACTION_LABELS[action]} {inv_id}?",
                        text=present.ACTION_HELP[action], action_label=
                        present.ACTION_LABELS[action], back=quote(inv_id),
                        fields={"action": action, **params})
        response = await perform_action(request.scope, inv_id,
                                        present.ADMIN_ACTION.get(action, action), params)
        label = present.ACTION_LABELS[action]
        if response.status_code >= 300:
            try:
                message = orjson.loads(bytes(response.body)).get("message", "")
            except orjson.JSONDecodeError:
                message = bytes(response.body).decode(errors="replace")
            return _redirect(quote(inv_id) + "?" + urlencode(
                {"error": f"{label} refused ({response.status_code}): {message}"}))
        if action == "restart-as-new":
            new_id = orjson.loads(bytes(response.body))["new_invocation_id"]
            return _redirect(quote(new_id) + "?" + urlencode(
                {"message": f"Restarted {inv_id} as this new invocation."}))
        if action == "purge":
            return _redirect("../invocations?" + urlencode(
                {"message": f"Purged {inv_id}."}))
        return _redirect(quote(inv_id) + "?" + urlencode(
            {"message": f"{label}: done ({response.status_code})."}))

    async def journal_json(request: Request) -> Response:
        inv_id = request.path_params["invocation_id"]
        literal = sql_literal(inv_id)
        inv = await sql(f"SELECT * FROM sys_invocation WHERE id = {literal}")
        if not inv:
            raise UIError(404, f"The invocation '{inv_id}' was not found.")
        journal = await sql("SELECT index, entry_type, name, completed, invoked_id, "
                            "invoked_target, sleep_wakeup_at, promise_name, appended_at, "
                            f"entry_json FROM sys_journal WHERE id = {literal} ORDER BY index")
        for e in journal:
            if isinstance(e.get("entry_json"), str):
                e["entry_json"] = orjson.loads(e["entry_json"])
        doc = {"invocation": {k: v for k, v in inv[0].items() if v is not None},
               "journal": journal}
        return Response(orjson.dumps(doc, option=orjson.OPT_INDENT_2),
                        media_type="application/json", headers={
                            "content-disposition": f'attachment; filename="{inv_id}.json"',
                            **_SECURITY_HEADERS})

    # -- bulk ------------------------------------------------------------------------------

    async def bulk(request: Request) -> Response:
        """A bulk action: on the selected ids, or on every invocation matching the filter.
        Without `confirm`: the dry run (how many match, how many the action applies to).
        With it: one chunk of at most BULK_CHUNK, then the page for the next (the script
        follows the chunks and draws the progress; without script, a button does)."""
        guard(request)
        f = await form(request)
        action = str(f.get("action", ""))
        if action not in present.ACTION_LABELS:
            raise UIError(400, f"Unknown action '{action}'.")
        ids = [str(i) for i in f.getlist("id")]
        if f.get("scope") == "selected" and not ids:
            raise UIError(400, "Select at least one invocation first.")
        filter_qs = str(f.get("filter", ""))
        view = ListView.from_query(_parse_qs(filter_qs))
        applies = _applicable_sql(action)
        if ids:
            id_list = ", ".join(sql_literal(i) for i in ids[:10_000])
            cond = f"id IN ({id_list})"
        else:
            cond = view.condition()
        done, failed, expected = (_int(f.get(name)) for name in ("done", "failed", "expected"))
        counted = await sql(
            f"SELECT count(*) AS n, sum(CASE WHEN {applies} THEN 1 ELSE 0 END) AS k "
            f"FROM sys_invocation WHERE {cond}")
        matching, applicable = int(counted[0]["n"]), int(counted[0]["k"] or 0)
        if f.get("confirm") != "yes":
            return page(request, "bulk.html", nav="invocations",
                        title="Bulk action · durably", action=action, ids=ids,
                        filter_qs=filter_qs, matching=matching, applicable=applicable,
                        phase="dry-run", done=0, failed=0, expected=applicable)
        expected = expected or applicable
        batch = await sql(f"SELECT id FROM sys_invocation WHERE ({cond}) AND {applies} "
                          f"ORDER BY id LIMIT {BULK_CHUNK}")
        admin_action = present.ADMIN_ACTION.get(action, action)
        errors: list[str] = []
        for r in batch:
            response = await perform_action(request.scope, r["id"], admin_action, {})
            if response.status_code < 300:
                done += 1
            else:
                failed += 1
                if len(errors) < 5:
                    errors.append(f"{r['id']}: {bytes(response.body).decode(errors='replace')}")
        await engine.committed()
        # what still applies after this chunk (actions that complete rows drop them out)
        remaining = (await sql(f"SELECT count(*) AS n FROM sys_invocation "
                               f"WHERE ({cond}) AND {applies}"))[0]["n"]
        finished = not batch or not remaining or len(batch) < BULK_CHUNK and not remaining
        # an action that leaves rows applicable (pause of a suspended one, say) must not loop
        if batch and remaining and done + failed >= expected:
            finished = True
        if request.headers.get("accept") == "application/json":
            return Response(orjson.dumps({
                "done": done, "failed": failed, "expected": expected,
                "remaining": int(remaining), "finished": finished, "errors": errors}),
                media_type="application/json")
        return page(request, "bulk.html", nav="invocations", title="Bulk action · durably",
                    action=action, ids=ids, filter_qs=filter_qs, matching=matching,
                    applicable=int(remaining), phase="done" if finished else "running",
                    done=done, failed=failed, expected=expected, errors=errors)

    # -- services, playground, state --------------------------------------------------------

    def known_service(name: str) -> Service:
        try:
            return registry.get_service(name)
        except AdminError as e:
            raise UIError(404, e.message) from None

    def input_forms(service: Service) -> dict[str, list[present.FormField] | None]:
        """Per handler, the playground's form from its input JSON schema (None: raw JSON)."""
        return {h.name: present.form_fields(h.input.json_schema)
                if h.input.present and h.input.json_schema is not None else None
                for h in service.manifest.handlers}

    async def service_view(request: Request, service: Service, *, call: dict[str, str] | None
                           = None, body: str = "", result: dict[str, Any] | None = None,
                           values: dict[str, str] | None = None,
                           invalid: list[str] | None = None) -> Response:
        """The service page; after a playground call, with its result, the body sent and
        the form's values (or why the body was not sent)."""
        keys: list[dict[str, Any]] = []
        if service.ty != "service" and result is None:
            keys = await sql(
                "SELECT service_key, count(*) AS n FROM state "
                f"WHERE service_name = {sql_literal(service.name)} GROUP BY service_key "
                "ORDER BY service_key LIMIT 50")
        examples: dict[str, str | None] = {}
        for h in service.manifest.handlers:
            schema = h.input.json_schema if isinstance(h.input.json_schema, dict) else {}
            examples[h.name] = _example(schema) if h.input.present else None
        if call is not None:
            examples[call["handler"]] = body
        curls = {h.name: _curl(ingress_url, service, h.name, examples[h.name])
                 for h in service.manifest.handlers} if ingress_url else {}
        return page(request, "service.html", status=400 if invalid else 200, nav="services",
                    title=f"{service.name} · durably",
                    service=service_json(service), ty=service.ty, keys=keys,
                    message=request.query_params.get("message"),
                    error=request.query_params.get("error"),
                    examples=examples, result=result, call=call, forms=input_forms(service),
                    values=values or {}, invalid=invalid or [], curls=curls,
                    openapi=orjson.dumps(service_openapi(service),
                                         option=orjson.OPT_INDENT_2).decode())

    async def service_page(request: Request) -> Response:
        return await service_view(request, known_service(request.path_params["service"]))

    async def service_post(request: Request) -> Response:
        guard(request)
        service = known_service(request.path_params["service"])
        f = await form(request)
        if f.get("op") == "options":
            return await edit_options(request, service, f)
        return await playground_call(request, service, f)

    async def edit_options(request: Request, service: Service, f: FormData) -> Response:
        """The options form: the fields that differ from the service's current options
        become a `PATCH /services/{service}` body, checked as the API checks it; a
        confirmation page lists the changes; confirmed, the registry applies them as the
        route does and the page shows the answer."""
        back = quote(service.name, safe="")
        current = service_json(service)
        body: dict[str, Any] = {}
        for name, _label in present.OPTION_FIELDS:
            if name not in f or name not in current:
                continue
            value = str(f.get(name, "")).strip()
            if name == "public":
                if value in ("true", "false") and (value == "true") != current["public"]:
                    body["public"] = value == "true"
            elif value != str(current[name]):
                body[name] = value
        if not body:
            return _redirect(back + "?" + urlencode({"message": "Nothing to change."}))
        try:
            changes = parse_modify_service(body)
        except _PlainError as e:
            return _redirect(back + "?" + urlencode({"error": e.text}))
        labels = dict(present.OPTION_FIELDS)
        listed = [f"{labels[k]}: {current[k]} → {str(v).lower() if k == 'public' else v}"
                  for k, v in body.items()]
        if f.get("confirm") != "yes":
            fields = {"op": "options", **{k: str(v).lower() if k == "public" else str(v)
                                          for k, v in body.items()}}
            return page(request, "confirm.html", title="Change options · durably",
                        heading=f"Change the options of {service.name}?",
                        text=f"PATCH /services/{service.name} with these changes:",
                        items=listed,
                        action_label="Save", back=back, fields=fields)
        try:
            updated = service_json(registry.modify_service(service.name, **changes))
        except AdminError as e:
            return _redirect(back + "?" + urlencode({"error": e.message}))
        saved = "; ".join(f"{labels[k]}: {updated[k] if k != 'public' else str(updated[k]).lower()}"
                          for k in body)
        notes = " ".join(str(i.get("message", "")) for i in updated.get("info") or [])
        return _redirect(back + "?" + urlencode(
            {"message": f"Saved. {saved}." + (f" {notes}" if notes else "")}))

    async def playground_call(request: Request, service: Service, f: FormData) -> Response:
        handler = str(f.get("handler", ""))
        key = str(f.get("key", ""))
        body = str(f.get("body", ""))
        mode = str(f.get("mode", "call"))
        send = mode.startswith("send")
        idem = str(f.get("idempotency_key", "")).strip()
        if ingress_url is None:
            raise UIError(503, "The ingress address is unknown; the playground cannot call it.")
        # the body: from the form's fields, unless a "... JSON" button sent the raw text;
        # checked here as the browser checked it (types, required, enums, bounds)
        fields = input_forms(service).get(handler)
        values = ({fl.name: str(f.get("f:" + fl.name, "")) for fl in fields}
                  if fields else {})
        invalid: list[str] = []
        # (a post without any field, from a script say, sends its body as it is)
        from_form = any(k.startswith("f:") for k in f) and not mode.endswith("-json")
        if fields and from_form:
            value, invalid = present.body_from_form(fields, values)
            if not invalid:
                body = orjson.dumps(value).decode()
        elif body.strip():
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                invalid = [f"The body is not JSON: {e}"]
            else:
                invalid = present.check_value(fields, parsed) if fields else []
        call = {"handler": handler, "key": key, "mode": "send" if send else "call",
                "source": "form" if fields and from_form else "json"}
        if invalid:
            return await service_view(request, service, body=body, call=call, values=values,
                                      invalid=invalid)
        path = _ingress_path(service, quote(key, safe=""), handler) + ("/send" if send else "")
        headers = {"content-type": "application/json"} if body.strip() else {}
        if idem:
            headers["idempotency-key"] = idem
        t0 = time.perf_counter()
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                r = await client.post(ingress_url.rstrip("/") + "/" + path,
                                      content=body.encode() if body.strip() else None,
                                      headers=headers)
            text, is_json = present.pretty_bytes(r.content)
            result = {"status": r.status_code, "body": text, "json": is_json,
                      "ms": int((time.perf_counter() - t0) * 1000),
                      "invocation_id": r.headers.get("x-restate-id") or (
                          orjson.loads(r.content).get("invocationId") if send and
                          r.status_code == 202 else None)}
        except httpx.HTTPError as e:
            result = {"status": 0, "body": f"The ingress did not answer: {e}", "json": False,
                      "ms": int((time.perf_counter() - t0) * 1000), "invocation_id": None}
        return await service_view(request, service, body=body, result=result, call=call,
                                  values=values)

    async def state_index(request: Request) -> Response:
        keyed = [s for s in registry.list_services() if s.ty != "service"]
        counts = {r["service_name"]: r for r in await sql(
            "SELECT service_name, count(DISTINCT service_key) AS keys, count(*) AS entries "
            "FROM state GROUP BY service_name")}
        return page(request, "state_index.html", nav="state", title="State · durably",
                    services=keyed, counts=counts)

    async def state_page(request: Request) -> Response:
        name = request.path_params["service"]
        service = known_service(name)
        key = request.query_params.get("key")
        search = request.query_params.get("search", "").strip()
        svc = sql_literal(name)
        if key is None:
            like = f" AND service_key LIKE {sql_literal('%' + search + '%')}" if search else ""
            keys = await sql(
                f"SELECT service_key, count(*) AS n, sum(value_length) AS bytes FROM state "
                f"WHERE service_name = {svc}{like} GROUP BY service_key "
                "ORDER BY service_key LIMIT 200")
            promise_keys: list[dict[str, Any]] = []
            if service.ty == "workflow":
                promise_keys = await sql(
                    f"SELECT service_key, count(*) AS n FROM sys_promise WHERE service_name "
                    f"= {svc}{like} GROUP BY service_key ORDER BY service_key LIMIT 200")
            return page(request, "state_keys.html", nav="state", title=f"{name} state",
                        service=service, keys=keys, search=search, promise_keys=promise_keys)
        k = sql_literal(key)
        entries = await sql(f"SELECT key, value FROM state WHERE service_name = {svc} "
                            f"AND service_key = {k} ORDER BY key")
        for entry in entries:
            text, is_json = present.pretty_bytes(entry["value"])
            entry["text"], entry["json"] = text, is_json
        promises = []
        if service.ty == "workflow":
            promises = await sql(
                "SELECT key, completed, completion_success_value, completion_failure "
                f"FROM sys_promise WHERE service_name = {svc} AND service_key = {k} "
                "ORDER BY key")
            for p in promises:
                text, is_json = present.pretty_bytes(p.get("completion_success_value"))
                p["text"], p["json"] = text, is_json
        holder = await sql("SELECT invocation_id FROM sys_keyed_service_status WHERE "
                           f"service_name = {svc} AND service_key = {k}")
        inbox = await sql(f"SELECT count(*) AS n FROM sys_inbox WHERE service_name = {svc} "
                          f"AND service_key = {k}")
        return page(request, "state.html", nav="state", title=f"{name}/{key} state",
                    service=service, key=key, entries=entries, promises=promises,
                    holder=holder[0]["invocation_id"] if holder else None,
                    inbox=int(inbox[0]["n"]) if inbox else 0,
                    message=request.query_params.get("message"),
                    error=request.query_params.get("error"))

    async def state_edit(request: Request) -> Response:
        guard(request)
        name = request.path_params["service"]
        f = await form(request)
        key = str(f.get("key", ""))
        entry = str(f.get("entry", "")).strip()
        op = str(f.get("op", "set"))
        back = f"{quote(name, safe='')}?" + urlencode({"key": key})
        current = await sql(
            f"SELECT key, value FROM state WHERE service_name = {sql_literal(name)} "
            f"AND service_key = {sql_literal(key)}")
        new_state = {r["key"]: list(r["value"]) for r in current}
        if not entry:
            return _redirect(back + "&" + urlencode({"error": "The state key is empty."}))
        if op == "delete":
            new_state.pop(entry, None)
        else:
            value = str(f.get("value", ""))
            if f.get("as_json", "on") and value.strip():
                try:
                    orjson.loads(value)
                except orjson.JSONDecodeError as e:
                    return _redirect(back + "&" + urlencode(
                        {"error": f"The value is not JSON ({e}); untick 'JSON' to store text."}))
            new_state[entry] = list(value.encode())
        try:
            await modify_state(engine, registry, name,
                               {"object_key": key, "new_state": new_state})
        except AdminError as e:
            return _redirect(back + "&" + urlencode({"error": e.message}))
        verb = "Removed" if op == "delete" else "Saved"
        return _redirect(back + "&" + urlencode({"message": f"{verb} '{entry}'."}))

    # -- SQL console -------------------------------------------------------------------------

    async def sql_console(request: Request) -> Response:
        query = request.query_params.get("query", "").strip()
        columns: list[str] = []
        rows: list[list[Any]] = []
        error = None
        truncated = False
        elapsed = None
        if query:
            try:
                columns, rows, truncated, elapsed = await sql_raw(query)
            except QueryRefused as e:
                error = f"Query refused: {e}"
            except QueryError as e:
                error = f"SQL error: {e}"
        shown = rows[:1000]
        return page(request, "sql.html", status=400 if error else 200, nav="sql",
                    title="SQL · durably", query=query, columns=columns, rows=shown,
                    total=len(rows), truncated=truncated or len(rows) > len(shown),
                    error=error, elapsed=elapsed, examples=EXAMPLE_QUERIES)

    # -- plumbing ----------------------------------------------------------------------------

    async def on_ui_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UIError)
        return page(request, "error.html", status=exc.status, title="Error · durably",
                    message=exc.message)

    async def on_admin_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AdminError)
        return page(request, "error.html", status=exc.status, title="Error · durably",
                    message=exc.message)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        text = "No such page." if exc.status_code == 404 else str(exc.detail)
        return page(request, "error.html", status=exc.status_code, title="Error · durably",
                    message=text)

    ui = Starlette(
        routes=[
            Route("/", overview, methods=["GET"]),
            Route("/deployments", register_deployment, methods=["POST"]),
            Route("/deployments/{deployment}", remove_deployment, methods=["POST"]),
            Route("/invocations", invocations, methods=["GET"]),
            Route("/invocations/{invocation_id}", invocation, methods=["GET"]),
            Route("/invocations/{invocation_id}", invocation_action, methods=["POST"]),
            Route("/journal/{invocation_id}", journal_json, methods=["GET"]),
            Route("/bulk", bulk, methods=["POST"]),
            Route("/services/{service}", service_page, methods=["GET"]),
            Route("/services/{service}", service_post, methods=["POST"]),
            Route("/state", state_index, methods=["GET"]),
            Route("/state/{service}", state_page, methods=["GET"]),
            Route("/state/{service}", state_edit, methods=["POST"]),
            Route("/sql", sql_console, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=str(_HERE / "static")), name="static"),
        ],
        exception_handlers={UIError: on_ui_error, AdminError: on_admin_error,
                            HTTPException: on_http_error},
    )

    async def to_ui(request: Request) -> Response:
        # relative, so that it holds behind a path prefix ("/" -> "ui/", "/ui" -> "ui/")
        return RedirectResponse("ui/", status_code=308)

    return [
        Route("/", to_ui, methods=["GET", "HEAD"]),
        Route("/ui", to_ui, methods=["GET", "HEAD"]),
        Mount("/ui", app=ui),
    ]


def _when(value: Any, *, full: bool = False) -> Markup | str:
    """A time as `<time>`: relative ("3 min ago", "in 2 s") as text, the absolute time in its
    `datetime` and tooltip (and, `full`, written out beside it); ui.js keeps the text fresh.
    Anything that is not a time is shown as it is (escaped)."""
    ms = present.time_ms(value)
    if ms is None:
        return "" if value is None else str(value)
    absolute = present.ts_ms(ms)
    text = present.relative(ms, int(time.time() * 1000))
    out = Markup('<time datetime="{0}" title="{0}" data-rel>{1}</time>').format(absolute, text)
    if full:
        out += Markup(' <small class="abs">{0}</small>').format(absolute)
    return out


def _int(value: object) -> int:
    try:
        return int(str(value or 0))
    except ValueError:
        return 0


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _cookie_path(request: Request) -> str:
    root = request.scope.get("root_path", "") or "/ui"
    return root if root.endswith("/") else root + "/"


def _parse_qs(qs: str) -> Any:
    from starlette.datastructures import QueryParams

    return QueryParams(qs)


def _applicable_sql(action: str) -> str:
    """The invocations (in sys_invocation terms) that `action` applies to, as the detail page
    decides with `present.actions_for`."""
    return {
        "cancel": "status <> 'completed'",
        "kill": "status <> 'completed'",
        "pause": "status IN ('running', 'backing-off')",
        "resume": "status = 'paused'",
        "retry-now": "status = 'backing-off'",
        "purge": "status = 'completed'",
        "restart-as-new": "status = 'completed' AND journal_size > 0 "
                          "AND target_service_ty <> 'workflow'",
    }[action]


def _ingress_path(service: Service, quoted_key: str, handler: str) -> str:
    """`Service/handler`, or `Service/key/handler` for objects and workflows."""
    key = f"{quoted_key}/" if service.ty != "service" else ""
    return f"{quote(service.name, safe='')}/{key}{quote(handler, safe='')}"


def _curl(ingress_url: str, service: Service, handler: str, body: str | None) -> str:
    """The playground's call as a shell command (the body as the form's JSON, one line)."""
    path = _ingress_path(service, "<key>", handler)
    lines = [f"curl -X POST '{ingress_url.rstrip('/')}/{path}'"]
    if body is not None and body.strip():
        try:
            one_line = orjson.dumps(orjson.loads(body)).decode()
        except orjson.JSONDecodeError:
            one_line = body
        quoted = one_line.replace("'", "'\\''")
        lines += ["-H 'content-type: application/json'", f"--data '{quoted}'"]
    return " \\\n  ".join(lines)


def _example(schema: dict[str, Any]) -> str:
    """A starting body for the playground, from the handler's JSON schema."""
    def value(s: Any, depth: int = 0) -> Any:
        if not isinstance(s, dict) or depth > 4:
            return None
        if "default" in s:
            return s["default"]
        if "examples" in s and isinstance(s["examples"], list) and s["examples"]:
            return s["examples"][0]
        ty = s.get("type")
        if ty == "object" or "properties" in s:
            return {k: value(v, depth + 1) for k, v in (s.get("properties") or {}).items()}
        if ty == "array":
            return []
        if ty in ("integer", "number"):
            return 0
        if ty == "boolean":
            return False
        if ty == "string":
            return ""
        return None

    return orjson.dumps(value(schema), option=orjson.OPT_INDENT_2).decode()
